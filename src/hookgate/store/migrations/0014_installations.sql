-- The installation (a Zaptec site) a charging session belongs to, as its start named it:
-- tariffs can be assigned per installation (ADR 0026), so pricing must know it both for
-- the views and the export (`charging_sessions`) and for budgets, when a session end is
-- accounted (`authorized_sessions`, read in the same transaction). NULL where no call
-- named one.

ALTER TABLE charging_sessions ADD COLUMN installation_id TEXT;
ALTER TABLE authorized_sessions ADD COLUMN installation_id TEXT;

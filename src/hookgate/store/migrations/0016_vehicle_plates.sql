-- The vehicle of a charging session (its token's `vehicle`) and of a parking transaction
-- (its licence plate), as a plate compares: upper case, without spaces or dashes. A
-- vehicle parked while it charges elsewhere is found by one lookup on these indexes,
-- whichever of the two rows processing writes second (views.md#anomaly-flags). Rows
-- written before this version have no plate until an event about them is processed again.
ALTER TABLE charging_sessions ADD COLUMN plate TEXT;
ALTER TABLE parking_transactions ADD COLUMN plate TEXT;
CREATE INDEX charging_sessions_plate ON charging_sessions (plate, started_at);
CREATE INDEX parking_transactions_plate ON parking_transactions (plate, started_at);

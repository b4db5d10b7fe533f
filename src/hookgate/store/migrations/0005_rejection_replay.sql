-- Rejected requests that can be verified again after a configuration fix: `replay` holds
-- the full body and only the headers a signature check needs (never credentials), and
-- `rerun_event_id` the inbox event a successful re-run produced.

ALTER TABLE rejections ADD COLUMN replay {blob};
ALTER TABLE rejections ADD COLUMN rerun_event_id TEXT;

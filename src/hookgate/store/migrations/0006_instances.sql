-- Several instances on one database: the store re-checks an approval's budget and session
-- limits (docs/adr/0007) from consumption in a period and the active sessions of a token
-- or group; these indexes keep that check a few index probes. Retention (`hookgate
-- prune`) finds finished deliveries through their id (time-ordered) and status.

CREATE INDEX consumption_token_time ON consumption (token, occurred_at);
CREATE INDEX consumption_group_time ON consumption (group_id, occurred_at);
CREATE INDEX authorized_sessions_active_token ON authorized_sessions (token)
    WHERE status = 'active';
CREATE INDEX authorized_sessions_active_group ON authorized_sessions (group_id)
    WHERE status = 'active';

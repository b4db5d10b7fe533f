-- Domain views kept up to date from the events by the processing step (processing/).
-- Every view but meter_values has a time-ordered `id` (ids.py, payment_states: event_id)
-- for cursor pagination, newest first. `versions` holds, per field, the
-- "<occurred_at ISO>|<event id>" of the fact that set it: a field changes only for a
-- newer fact, so the final row does not depend on the order events are processed in.

CREATE TABLE charging_sessions (
    source TEXT NOT NULL,
    session_key TEXT NOT NULL,
    id TEXT NOT NULL,
    provider TEXT NOT NULL,
    status TEXT NOT NULL,
    charger_id TEXT,
    evse_id TEXT,
    connector_id TEXT,
    token TEXT,
    user_id TEXT,
    external_id TEXT,
    started_at {ts},
    ended_at {ts},
    energy_kwh TEXT,
    cost TEXT,
    cost_excl_vat TEXT,
    currency TEXT,
    flags {json} NOT NULL,
    event_ids {json} NOT NULL,
    versions {json} NOT NULL DEFAULT '{{}}',
    last_occurred_at {ts},
    updated_at {ts} NOT NULL,
    PRIMARY KEY (source, session_key)
);
CREATE UNIQUE INDEX charging_sessions_id ON charging_sessions (id);
CREATE INDEX charging_sessions_started_at ON charging_sessions (started_at);
CREATE INDEX charging_sessions_token ON charging_sessions (token, id);
CREATE INDEX charging_sessions_charger ON charging_sessions (charger_id, id);
CREATE INDEX charging_sessions_external ON charging_sessions (source, external_id);

CREATE TABLE meter_values (
    source TEXT NOT NULL,
    session_key TEXT NOT NULL,
    at {ts} NOT NULL,
    measurand TEXT NOT NULL,
    phase TEXT NOT NULL,
    value TEXT NOT NULL,
    unit TEXT,
    event_id TEXT NOT NULL,
    PRIMARY KEY (source, session_key, at, measurand, phase)
);
CREATE INDEX meter_values_at ON meter_values (at);

CREATE TABLE charge_points (
    source TEXT NOT NULL,
    charge_point_id TEXT NOT NULL,
    id TEXT NOT NULL,
    name TEXT,
    vendor TEXT,
    model TEXT,
    serial_number TEXT,
    firmware_version TEXT,
    network_status TEXT,
    hardware_status TEXT,
    status TEXT,
    location_id TEXT,
    last_boot_at {ts},
    deleted {bool} NOT NULL DEFAULT FALSE,
    last_event_type TEXT,
    last_action TEXT,
    last_event_id TEXT,
    versions {json} NOT NULL DEFAULT '{{}}',
    last_occurred_at {ts},
    updated_at {ts} NOT NULL,
    PRIMARY KEY (source, charge_point_id)
);
CREATE UNIQUE INDEX charge_points_id ON charge_points (id);

CREATE TABLE evses (
    source TEXT NOT NULL,
    evse_id TEXT NOT NULL,
    id TEXT NOT NULL,
    charge_point_id TEXT,
    status TEXT,
    hardware_status TEXT,
    connectors {json},
    max_power_kw TEXT,
    deleted {bool} NOT NULL DEFAULT FALSE,
    last_event_type TEXT,
    last_action TEXT,
    last_event_id TEXT,
    versions {json} NOT NULL DEFAULT '{{}}',
    last_occurred_at {ts},
    updated_at {ts} NOT NULL,
    PRIMARY KEY (source, evse_id)
);
CREATE UNIQUE INDEX evses_id ON evses (id);
CREATE INDEX evses_charge_point ON evses (source, charge_point_id);

CREATE TABLE parking_transactions (
    source TEXT NOT NULL,
    parking_id TEXT NOT NULL,
    id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    license_number TEXT NOT NULL,
    parking_user_id TEXT,
    started_at {ts} NOT NULL,
    ended_at {ts} NOT NULL,
    area_id TEXT,
    area_name TEXT,
    operator_id TEXT,
    operator_name TEXT,
    currency TEXT NOT NULL,
    price TEXT NOT NULL,
    price_vat TEXT NOT NULL,
    price_excl_vat TEXT NOT NULL,
    fee TEXT,
    fee_vat TEXT,
    fee_excl_vat TEXT,
    consistent {bool} NOT NULL,
    flags {json} NOT NULL,
    received_at {ts} NOT NULL,
    PRIMARY KEY (source, parking_id)
);
CREATE UNIQUE INDEX parking_transactions_id ON parking_transactions (id);
CREATE INDEX parking_transactions_ended_at ON parking_transactions (ended_at);
CREATE INDEX parking_transactions_license ON parking_transactions (license_number, id);

CREATE TABLE payment_objects (
    source TEXT NOT NULL,
    object_type TEXT NOT NULL,
    object_id TEXT NOT NULL,
    id TEXT NOT NULL,
    state TEXT NOT NULL,
    final {bool} NOT NULL,
    flags {json} NOT NULL,
    first_seen_at {ts} NOT NULL,
    updated_at {ts} NOT NULL,
    last_event_id TEXT NOT NULL,
    PRIMARY KEY (source, object_type, object_id)
);
CREATE UNIQUE INDEX payment_objects_id ON payment_objects (id);

-- Every state notification of an object; `applied` and `out_of_order` are what the state
-- did when the history is read in arrival (event id) order.
CREATE TABLE payment_states (
    event_id TEXT PRIMARY KEY,
    source TEXT NOT NULL,
    object_type TEXT NOT NULL,
    object_id TEXT NOT NULL,
    state TEXT NOT NULL,
    state_rank INTEGER,
    final {bool} NOT NULL DEFAULT FALSE,
    known {bool} NOT NULL DEFAULT TRUE,
    received_at {ts} NOT NULL,
    applied {bool} NOT NULL,
    out_of_order {bool} NOT NULL
);
CREATE INDEX payment_states_object ON payment_states (source, object_type, object_id, event_id);

CREATE TABLE provider_refs (
    source TEXT NOT NULL,
    kind TEXT NOT NULL,
    ref_id TEXT NOT NULL,
    id TEXT NOT NULL,
    action TEXT,
    first_seen_at {ts} NOT NULL,
    last_occurred_at {ts} NOT NULL,
    last_event_id TEXT NOT NULL,
    event_ids {json} NOT NULL,
    PRIMARY KEY (source, kind, ref_id)
);
CREATE UNIQUE INDEX provider_refs_id ON provider_refs (id);
CREATE INDEX provider_refs_kind ON provider_refs (kind, id);

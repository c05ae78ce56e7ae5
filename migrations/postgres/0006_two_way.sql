-- Two-way sync: what each linked system last held for a booking (so our own writes coming back
-- are recognised and a missed change is found by the poll), a journal of every change applied
-- and of every conflict resolved, the reminders already sent, and the client's confirmation.

CREATE TABLE booking_sync (
    business_id TEXT NOT NULL,
    booking_id  TEXT NOT NULL,
    system      TEXT NOT NULL,
    -- `status|start millis|master`: the version we last saw there or wrote there ourselves.
    version     TEXT NOT NULL,
    status      TEXT NOT NULL,
    seen_at     BIGINT NOT NULL,
    PRIMARY KEY (business_id, booking_id, system)
);

CREATE TABLE booking_events (
    id          BIGSERIAL PRIMARY KEY,
    business_id TEXT NOT NULL,
    booking_id  TEXT NOT NULL,
    at          BIGINT NOT NULL,
    origin      TEXT NOT NULL,
    kind        TEXT NOT NULL,
    detail      TEXT NOT NULL
);
CREATE INDEX booking_events_by_booking ON booking_events (business_id, booking_id, id);

CREATE TABLE reminders_sent (
    business_id TEXT NOT NULL,
    booking_id  TEXT NOT NULL,
    offset_s  BIGINT NOT NULL,
    -- A moved visit gets its reminders again for the new time.
    start_at    BIGINT NOT NULL,
    at          BIGINT NOT NULL,
    -- 1 when the moment passed before the booking existed (or a nearer reminder went instead).
    skipped     BIGINT NOT NULL,
    PRIMARY KEY (business_id, booking_id, offset_s, start_at)
);

ALTER TABLE bookings ADD COLUMN confirmed_at BIGINT;

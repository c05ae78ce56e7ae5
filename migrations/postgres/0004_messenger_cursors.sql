-- Where each messenger's update stream was last read up to (MAX's long-polling `marker`), one
-- row per business and channel. Written only after the updates before it were handled, so a
-- restart neither loses nor replays an update. Instants are unix milliseconds.

CREATE TABLE messenger_cursors (
    business_id TEXT NOT NULL,
    channel     TEXT NOT NULL,
    cursor      TEXT NOT NULL,
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (business_id, channel)
);

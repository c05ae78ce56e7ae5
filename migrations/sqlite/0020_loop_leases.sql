-- Periodic loops (reconciliations, reminders, stock checks) run once per business across every
-- instance on one store: the instance holding a loop's lease runs it and renews the lease each
-- round; when it dies, another takes the loop over once the lease has run out.
CREATE TABLE loop_leases (
    business_id TEXT NOT NULL,
    name TEXT NOT NULL,
    holder TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (business_id, name)
);

-- While zapis writes a change to the schedule itself (a client's move or cancel, a manager's
-- cancel from the CRM), the schedule already shows it and our store does not yet. Until this
-- moment (epoch milliseconds) a webhook or the reconciliation poll reporting that booking is
-- most likely our own write coming back, and waits instead of being applied as the salon's.
ALTER TABLE bookings ADD COLUMN changing_until BIGINT;

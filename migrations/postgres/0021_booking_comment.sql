-- The client's comment to the visit, written in the chat before confirming. It goes into the
-- schedule's record and the CRM lead; a booking queued while the schedule was down is retried
-- from this row, so the comment lives here and not only in the dialog.
ALTER TABLE bookings ADD COLUMN client_comment TEXT;

//! Button payloads for messages sent outside a conversation turn: notices about a booking,
//! reminders. The button grammar is the dialog's own (see `engine`); other modules ask here
//! instead of writing payloads themselves, so the grammar can change in one place.
//!
//! Such a message may be pressed long after it was sent, whatever the client did in between,
//! so its payloads carry no render version (`0`) and name only steps the engine honours from
//! any message.

use crate::domain::BookingId;

/// Stands for "no render version": the engine honours these payloads from any message.
const ANY_MESSAGE: &str = "0";

fn payload(kind: &str) -> String {
    format!("{ANY_MESSAGE}|{kind}")
}

fn about(kind: &str, booking_id: &BookingId) -> String {
    format!("{ANY_MESSAGE}|{kind}:{booking_id}")
}

/// "Book": starts a new booking.
pub fn book() -> String {
    payload("B")
}

/// "My bookings": the client's upcoming bookings.
pub fn my_bookings() -> String {
    payload("Y")
}

/// "I'll come", under a reminder: confirms the visit.
pub fn confirm_visit(booking_id: &BookingId) -> String {
    about("Rk", booking_id)
}

/// "Cancel", under a reminder: asks, then cancels that booking.
pub fn cancel_visit(booking_id: &BookingId) -> String {
    about("Rc", booking_id)
}

/// "Move", under a reminder: the days of the same service and master.
pub fn move_visit(booking_id: &BookingId) -> String {
    about("Rm", booking_id)
}

//! Coordinators: broker-side state machines that own a slice of client state through a
//! replicated internal topic and move with that topic's partition leadership. Today the group
//! coordinator (`groups`, over `__consumer_offsets`); a transaction coordinator (over
//! `__transaction_state`) will take the same shape.

pub mod groups;

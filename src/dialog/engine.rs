use super::{Context, DialogState, Input, Outcome};

/// Advances the conversation by one input.
pub fn step(state: DialogState, _input: Input, _ctx: &Context) -> (DialogState, Outcome) {
    (state, Outcome::default())
}

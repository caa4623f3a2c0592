//! Helpers shared by the integration tests (each test file includes this module with `mod common;`).
#![allow(dead_code, clippy::indexing_slicing)]

/// `input` cut at `cuts` (taken modulo `input.len() + 1`, in any order): the pieces, in order,
/// that a network could deliver it in. Empty pieces are kept: a read may return nothing new.
#[must_use]
pub fn split_at_cuts<'a>(input: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
    cuts.sort_unstable();
    let mut pieces = Vec::with_capacity(cuts.len() + 1);
    let mut start = 0;
    for cut in cuts {
        pieces.push(&input[start..cut]);
        start = cut;
    }
    pieces.push(&input[start..]);
    pieces
}

//! The rewrite phase: what v1 changes in a request before it goes upstream and in a model list
//! on its way back, by a group's model redirect rules (spec §2.8), and the body decoding both
//! directions need (§2.8 model lists, §2.10 error bodies).
//!
//! Everything here is pure: values in, values out, no I/O and no shard state, so the request
//! path (`forward`) decides when to call it and what to answer. Param overrides stay in
//! `forward`, where the body is first parsed.

pub mod decode;
pub mod model_redirect;
pub mod models_list;

pub use decode::{Encoding, decode_body, parse_content_encoding};
pub use model_redirect::{ModelRedirect, RedirectOutcome, StrictMiss, redirect_model};
pub use models_list::{is_models_request, rewrite_models_list};

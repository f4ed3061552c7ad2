//! HTTP/1.1 on a byte stream: reading requests ([`request`]) and writing replies, whole or
//! streamed, in the framing a test asked for ([`response`]).

pub(crate) mod request;
pub(crate) mod response;

pub(crate) use request::{Inbox, ReadError, RequestView};
pub(crate) use response::{Body, Delivery, Reply, Shape};

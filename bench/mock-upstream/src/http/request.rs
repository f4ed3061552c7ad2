//! Reading one HTTP/1.1 request at a time: the head with httparse, then a body framed by
//! `Content-Length` or chunked. Bytes of a pipelined next request stay in the [`Inbox`].

use std::io;
use std::ops::Range;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Headers parsed per request, in a stack array: real clients send fewer than 30.
pub(crate) const MAX_HEADERS: usize = 64;
/// A longer head is answered 431: it is a bug in the client, not a request worth serving.
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// A larger body is answered 413; generous, since tests may send big prompts on purpose.
const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;
/// Spare room guaranteed before each read; one read usually takes a whole request.
const READ_RESERVE: usize = 16 * 1024;

/// The bytes read from one connection, reused for every request on it.
pub(crate) struct Inbox {
    /// Received bytes not yet consumed: the current request, maybe the start of the next.
    buf: Vec<u8>,
    /// The current request's body when it arrived chunked, without the framing.
    dechunked: Vec<u8>,
}

/// Where the current request lies in the [`Inbox`], once it has fully arrived.
pub(crate) struct Received {
    head_len: usize,
    body: BodyAt,
    /// Head plus body as framed on the wire: what to drop once the request is answered.
    wire_len: usize,
    pub(crate) keep_alive: bool,
}

enum BodyAt {
    Inline(Range<usize>),
    Dechunked,
}

/// Why no request could be read.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// The connection failed or closed mid-request: nothing to answer, nobody to tell.
    Disconnected,
    /// The request is unacceptable: answer `status` with `message`, then close.
    Rejected { status: u16, message: String },
}

impl From<io::Error> for ReadError {
    fn from(_: io::Error) -> ReadError {
        ReadError::Disconnected
    }
}

fn rejected(status: u16, message: impl Into<String>) -> ReadError {
    ReadError::Rejected {
        status,
        message: message.into(),
    }
}

/// What the head says about the body and the connection.
struct Head {
    len: usize,
    body: BodyFraming,
    keep_alive: bool,
    expects_continue: bool,
}

enum BodyFraming {
    Length(usize),
    Chunked,
}

/// A parsed request, borrowed from the [`Inbox`].
#[derive(Debug)]
pub(crate) struct RequestView<'a> {
    pub(crate) method: &'a str,
    /// Path and query, as sent.
    pub(crate) path: &'a str,
    pub(crate) headers: &'a [httparse::Header<'a>],
    pub(crate) body: &'a [u8],
}

impl<'a> RequestView<'a> {
    /// The first header called `name` (any case), if its value is UTF-8.
    pub(crate) fn header(&self, name: &str) -> Option<&'a str> {
        let header = self
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))?;
        std::str::from_utf8(header.value).ok()
    }
}

impl Inbox {
    pub(crate) fn new() -> Inbox {
        Inbox {
            buf: Vec::with_capacity(READ_RESERVE),
            dechunked: Vec::new(),
        }
    }

    /// Reads until one whole request is buffered. `Ok(None)`: the client closed cleanly between
    /// requests.
    pub(crate) async fn read_request<S>(
        &mut self,
        io: &mut S,
    ) -> Result<Option<Received>, ReadError>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let Some(head) = self.read_head(io).await? else {
            return Ok(None);
        };
        let (body, wire_len) = match head.body {
            BodyFraming::Length(0) => (BodyAt::Inline(head.len..head.len), head.len),
            BodyFraming::Length(len) => {
                self.continue_if_expected(io, &head).await?;
                self.read_to(io, head.len + len).await?;
                (BodyAt::Inline(head.len..head.len + len), head.len + len)
            }
            BodyFraming::Chunked => {
                self.continue_if_expected(io, &head).await?;
                let len = self.read_chunked(io, head.len).await?;
                (BodyAt::Dechunked, head.len + len)
            }
        };
        Ok(Some(Received {
            head_len: head.len,
            body,
            wire_len,
            keep_alive: head.keep_alive,
        }))
    }

    /// Parses the received request again, now that its body is in. httparse needs the header
    /// storage from the caller; parsing twice is cheaper than copying the headers out.
    pub(crate) fn view<'a>(
        &'a self,
        headers: &'a mut [httparse::Header<'a>; MAX_HEADERS],
        received: &Received,
    ) -> io::Result<RequestView<'a>> {
        let mut request = httparse::Request::new(headers);
        request.parse(&self.buf[..received.head_len]).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("request head parsed once, not twice: {e}"),
            )
        })?;
        let body = match &received.body {
            BodyAt::Inline(range) => &self.buf[range.clone()],
            BodyAt::Dechunked => &self.dechunked[..],
        };
        Ok(RequestView {
            method: request.method.unwrap_or_default(),
            path: request.path.unwrap_or_default(),
            headers: request.headers,
            body,
        })
    }

    /// Drops the answered request, keeping whatever the client pipelined after it.
    pub(crate) fn consume(&mut self, received: &Received) {
        self.buf.drain(..received.wire_len);
        self.dechunked.clear();
    }

    async fn read_head<S: AsyncRead + Unpin>(
        &mut self,
        io: &mut S,
    ) -> Result<Option<Head>, ReadError> {
        loop {
            if let Some(head) = parse_head(&self.buf)? {
                return Ok(Some(head));
            }
            if self.buf.len() >= MAX_HEAD_BYTES {
                return Err(rejected(
                    431,
                    format!("request head exceeds {MAX_HEAD_BYTES} bytes"),
                ));
            }
            if self.read_more(io).await? == 0 {
                return match self.buf.is_empty() {
                    true => Ok(None),
                    false => Err(io::Error::from(io::ErrorKind::UnexpectedEof).into()),
                };
            }
        }
    }

    /// `Expect: 100-continue` clients (curl, for big bodies) wait for this before sending it.
    async fn continue_if_expected<S: AsyncWrite + Unpin>(
        &mut self,
        io: &mut S,
        head: &Head,
    ) -> io::Result<()> {
        if head.expects_continue && self.buf.len() == head.len {
            io.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await?;
            io.flush().await?;
        }
        Ok(())
    }

    async fn read_to<S: AsyncRead + Unpin>(
        &mut self,
        io: &mut S,
        len: usize,
    ) -> Result<(), ReadError> {
        while self.buf.len() < len {
            if self.read_more(io).await? == 0 {
                return Err(io::Error::from(io::ErrorKind::UnexpectedEof).into());
            }
        }
        Ok(())
    }

    /// Decodes the chunked body starting at `start` into `dechunked`; returns its framed length.
    async fn read_chunked<S: AsyncRead + Unpin>(
        &mut self,
        io: &mut S,
        start: usize,
    ) -> Result<usize, ReadError> {
        let mut decoder = ChunkedDecoder::default();
        loop {
            if let Some(len) = decoder.decode(&self.buf[start..], &mut self.dechunked)? {
                return Ok(len);
            }
            if self.read_more(io).await? == 0 {
                return Err(io::Error::from(io::ErrorKind::UnexpectedEof).into());
            }
        }
    }

    async fn read_more<S: AsyncRead + Unpin>(&mut self, io: &mut S) -> io::Result<usize> {
        self.buf.reserve(READ_RESERVE);
        io.read_buf(&mut self.buf).await
    }
}

/// `Ok(None)` while the head is incomplete.
fn parse_head(buf: &[u8]) -> Result<Option<Head>, ReadError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    let len = match request.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(rejected(
                431,
                format!("more than {MAX_HEADERS} request headers"),
            ));
        }
        Err(e) => return Err(rejected(400, format!("malformed request head: {e}"))),
    };
    let mut head = Head {
        len,
        body: BodyFraming::Length(0),
        // HTTP/1.1 keeps the connection unless told otherwise; HTTP/1.0 closes unless told.
        keep_alive: request.version == Some(1),
        expects_continue: false,
    };
    let mut chunked = false;
    for header in request.headers.iter() {
        let value = std::str::from_utf8(header.value).unwrap_or_default().trim();
        let is = |name: &str| header.name.eq_ignore_ascii_case(name);
        if is("content-length") {
            head.body = BodyFraming::Length(parse_content_length(value)?);
        } else if is("transfer-encoding") {
            chunked = is_chunked(value)?;
        } else if is("connection") {
            head.keep_alive = keeps_alive(value, head.keep_alive);
        } else if is("expect") {
            head.expects_continue = value.eq_ignore_ascii_case("100-continue");
        }
    }
    // RFC 9112 §6.3: Transfer-Encoding overrides Content-Length.
    if chunked {
        head.body = BodyFraming::Chunked;
    }
    Ok(Some(head))
}

fn parse_content_length(value: &str) -> Result<usize, ReadError> {
    let len = value
        .parse::<usize>()
        .map_err(|_| rejected(400, format!("Content-Length '{value}' is not a byte count")))?;
    if len > MAX_BODY_BYTES {
        return Err(rejected(
            413,
            format!("body of {len} bytes exceeds {MAX_BODY_BYTES}"),
        ));
    }
    Ok(len)
}

fn is_chunked(value: &str) -> Result<bool, ReadError> {
    let last = value.rsplit(',').next().unwrap_or_default().trim();
    if last.eq_ignore_ascii_case("chunked") {
        return Ok(true);
    }
    Err(rejected(
        501,
        format!("Transfer-Encoding '{value}' is not supported: only chunked"),
    ))
}

fn keeps_alive(connection: &str, default: bool) -> bool {
    let mut tokens = connection.split(',').map(str::trim);
    if tokens.clone().any(|t| t.eq_ignore_ascii_case("close")) {
        return false;
    }
    default || tokens.any(|t| t.eq_ignore_ascii_case("keep-alive"))
}

/// Resumable chunked-body decoding: each call continues where the last complete chunk ended,
/// so a body arriving in many reads is decoded in linear time.
#[derive(Default)]
struct ChunkedDecoder {
    /// Offset of the next chunk-size line in the framed body.
    next_chunk: usize,
}

impl ChunkedDecoder {
    /// Appends every complete chunk to `out`. Returns the framed length once the last chunk and
    /// the trailers are in, `None` while more bytes are needed.
    fn decode(&mut self, framed: &[u8], out: &mut Vec<u8>) -> Result<Option<usize>, ReadError> {
        loop {
            let rest = &framed[self.next_chunk..];
            let (line_len, size) = match httparse::parse_chunk_size(rest) {
                Ok(httparse::Status::Complete(parsed)) => parsed,
                Ok(httparse::Status::Partial) => return Ok(None),
                Err(_) => return Err(rejected(400, "malformed chunk size in chunked body")),
            };
            if size == 0 {
                let trailers_len = trailers_len(&rest[line_len..]);
                return Ok(trailers_len.map(|len| self.next_chunk + line_len + len));
            }
            let size = usize::try_from(size)
                .ok()
                .filter(|size| out.len() + size <= MAX_BODY_BYTES)
                .ok_or_else(|| {
                    rejected(413, format!("chunked body exceeds {MAX_BODY_BYTES} bytes"))
                })?;
            let Some(chunk) = rest.get(line_len..line_len + size + 2) else {
                return Ok(None);
            };
            if !chunk.ends_with(b"\r\n") {
                return Err(rejected(
                    400,
                    "chunk data not followed by CRLF in chunked body",
                ));
            }
            out.extend_from_slice(&chunk[..size]);
            self.next_chunk += line_len + size + 2;
        }
    }
}

/// Length of the trailer section (ending with an empty line) once it is complete.
fn trailers_len(bytes: &[u8]) -> Option<usize> {
    if bytes.starts_with(b"\r\n") {
        return Some(2);
    }
    bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|at| at + 4)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(framed: &[u8]) -> Result<Option<(usize, Vec<u8>)>, ReadError> {
        let mut out = Vec::new();
        let len = ChunkedDecoder::default().decode(framed, &mut out)?;
        Ok(len.map(|len| (len, out)))
    }

    #[test]
    fn chunked_body_is_decoded_with_extensions_and_trailers() {
        let framed = b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nx-trailer: 1\r\n\r\nNEXT";
        let (len, body) = decode_all(framed).unwrap().unwrap();
        assert_eq!(body, b"hello world");
        assert_eq!(&framed[len..], b"NEXT");
    }

    #[test]
    fn chunked_body_resumes_across_reads() {
        let framed = b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        let mut decoder = ChunkedDecoder::default();
        let mut out = Vec::new();
        for end in 0..framed.len() {
            assert!(
                decoder.decode(&framed[..end], &mut out).unwrap().is_none(),
                "at {end}"
            );
        }
        assert_eq!(
            decoder.decode(framed, &mut out).unwrap(),
            Some(framed.len())
        );
        assert_eq!(out, b"abcde");
    }

    #[test]
    fn chunk_without_crlf_is_rejected() {
        assert!(matches!(
            decode_all(b"3\r\nabcXY0\r\n\r\n"),
            Err(ReadError::Rejected { status: 400, .. })
        ));
    }

    #[test]
    fn connection_header_decides_keep_alive() {
        assert!(!keeps_alive("close", true));
        assert!(!keeps_alive("Keep-Alive, Close", true));
        assert!(keeps_alive("keep-alive", false));
        assert!(keeps_alive("upgrade", true));
        assert!(!keeps_alive("upgrade", false));
    }
}

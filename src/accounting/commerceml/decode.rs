//! Reading the bytes 1C sends: UTF-8 with a BOM or whatever the XML declaration names (old
//! releases and Bitrix-style exchanges use windows-1251), transcoded as it streams, with a
//! budget on the length of any one event.

use std::io::Read;

use quick_xml::Reader;
use quick_xml::events::Event;

use super::CmlError;

pub(super) const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// How much of the file start is read to find the BOM or the XML declaration.
const PREFIX: usize = 4096;
/// Elements nest at most this deep. CommerceML needs about a dozen levels (plus two per level
/// of nested goods groups); a deeper file is refused before it costs anything.
pub const MAX_DEPTH: usize = 128;
/// The longest single event (a tag, a text run, a comment) and the longest value read. The
/// reader buffers one event whole, so this bounds its memory whatever the file holds.
pub const MAX_EVENT: u64 = 8 * 1024 * 1024;

/// Bytes → text, by the BOM or else by the encoding the XML declaration names.
pub fn decode(bytes: &[u8]) -> Result<String, CmlError> {
    let mut out = String::new();
    let mut reader = decoding_reader(bytes)?;
    reader.read_to_string(&mut out).map_err(|e| {
        CmlError::Malformed(
            e.into_inner()
                .map(|e| e.to_string())
                .unwrap_or_else(|| "the file cannot be read".into()),
        )
    })?;
    Ok(out)
}

/// The file as UTF-8, decoded as it goes: the BOM means UTF-8, otherwise the declaration's
/// `encoding` (none means UTF-8). Bytes that are not valid in that encoding are an error.
pub(super) fn decoding_reader<R: Read>(mut input: R) -> Result<Transcoder<impl Read>, CmlError> {
    let mut prefix = Vec::with_capacity(PREFIX);
    (&mut input)
        .take(PREFIX as u64)
        .read_to_end(&mut prefix)
        .map_err(|e| CmlError::Malformed(format!("the file cannot be read: {e}")))?;
    let (encoding, skip) = if prefix.starts_with(UTF8_BOM) {
        (encoding_rs::UTF_8, UTF8_BOM.len())
    } else {
        let encoding = match declared_encoding(&prefix)? {
            Some(l) => encoding_rs::Encoding::for_label(l.as_bytes()).ok_or_else(|| {
                CmlError::Malformed(format!("unknown encoding {l:?} in the XML declaration"))
            })?,
            None => encoding_rs::UTF_8,
        };
        (encoding, 0)
    };
    let mut head = std::io::Cursor::new(prefix);
    head.set_position(skip as u64);
    Ok(Transcoder::new(head.chain(input), encoding))
}

/// Streams bytes of `encoding` out as UTF-8, refusing malformed input (no replacement
/// characters: a wrong declaration must not silently change names and prices).
pub(super) struct Transcoder<R> {
    inner: R,
    decoder: encoding_rs::Decoder,
    encoding: &'static encoding_rs::Encoding,
    input: Vec<u8>,
    in_start: usize,
    in_end: usize,
    output: Vec<u8>,
    out_start: usize,
    out_end: usize,
    eof: bool,
    done: bool,
}

impl<R: Read> Transcoder<R> {
    fn new(inner: R, encoding: &'static encoding_rs::Encoding) -> Self {
        Transcoder {
            inner,
            decoder: encoding.new_decoder_without_bom_handling(),
            encoding,
            input: vec![0; 16 * 1024],
            in_start: 0,
            in_end: 0,
            output: vec![0; 32 * 1024],
            out_start: 0,
            out_end: 0,
            eof: false,
            done: false,
        }
    }

    /// Decodes the next stretch into `output`; false at the end of the input.
    fn fill(&mut self) -> std::io::Result<bool> {
        self.out_start = 0;
        self.out_end = 0;
        while self.out_end == 0 {
            if self.done {
                return Ok(false);
            }
            if self.in_start == self.in_end && !self.eof {
                self.in_start = 0;
                self.in_end = self.inner.read(&mut self.input)?;
                self.eof = self.in_end == 0;
            }
            let (result, read, written) = self.decoder.decode_to_utf8_without_replacement(
                &self.input[self.in_start..self.in_end],
                &mut self.output,
                self.eof,
            );
            self.in_start += read;
            self.out_end = written;
            match result {
                encoding_rs::DecoderResult::Malformed(_, _) => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!(
                            "the file is not valid {} as its declaration says",
                            self.encoding.name()
                        ),
                    ));
                }
                encoding_rs::DecoderResult::InputEmpty if self.eof => self.done = true,
                _ => {}
            }
        }
        Ok(true)
    }
}

impl<R: Read> Read for Transcoder<R> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if self.out_start == self.out_end && !self.fill()? {
            return Ok(0);
        }
        let n = out.len().min(self.out_end - self.out_start);
        out[..n].copy_from_slice(&self.output[self.out_start..self.out_start + n]);
        self.out_start += n;
        Ok(n)
    }
}

/// Fails the read once the parser has gone `MAX_EVENT` bytes past the end of its last event:
/// the reader would otherwise buffer a gigabyte-long text or comment whole.
pub(super) struct EventBudget<R> {
    pub(super) inner: R,
    pub(super) consumed: u64,
    pub(super) mark: std::rc::Rc<std::cell::Cell<u64>>,
    pub(super) exceeded: std::rc::Rc<std::cell::Cell<bool>>,
}

impl<R: Read> Read for EventBudget<R> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if self.consumed.saturating_sub(self.mark.get()) > MAX_EVENT {
            self.exceeded.set(true);
            return Err(std::io::Error::other(
                "an element, text or comment is too long",
            ));
        }
        let n = self.inner.read(out)?;
        self.consumed += n as u64;
        Ok(n)
    }
}

/// The `encoding` of `<?xml …?>`, read with the XML reader: the declaration is ASCII in every
/// encoding 1C uses, so the reader sees it before the first non-ASCII byte.
fn declared_encoding(bytes: &[u8]) -> Result<Option<String>, CmlError> {
    let mut reader = Reader::from_reader(bytes);
    let mut buf = Vec::new();
    loop {
        match reader.read_event_into(&mut buf) {
            Ok(Event::Decl(decl)) => {
                return match decl.encoding() {
                    Some(Ok(label)) => Ok(Some(label.into_owned())),
                    Some(Err(e)) => Err(CmlError::Malformed(format!("XML declaration: {e}"))),
                    None => Ok(None),
                };
            }
            Ok(Event::Comment(_)) | Ok(Event::Text(_)) => buf.clear(),
            Ok(_) => return Ok(None),
            Err(e) => return Err(CmlError::Malformed(format!("XML declaration: {e}"))),
        }
    }
}

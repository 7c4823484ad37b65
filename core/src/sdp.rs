//! SDP (RFC 4566) session descriptions as RTSP uses them: parse what cameras and encoders send
//! (DESCRIBE answers, ANNOUNCE bodies) into [`TrackParams`], and generate descriptions of rill's
//! streams.
//!
//! Parsing is tolerant where real devices are sloppy (bare `\n` line ends, blank lines, stray
//! whitespace, lines without `=`, unknown line types and attributes, base64 without padding,
//! undecodable parameter set entries) and strict where a stream could not be understood (no
//! `v=` first, a clock rate of 0, an unknown or malformed `m=` line). Sizes are bounded.

use std::fmt::{self, Write as _};

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use bytes::Bytes;

use crate::codec::aac::AudioSpecificConfig;
use crate::codec::latm::StreamMuxConfig;
use crate::rtp::{CodecParams, TrackParams};

/// Largest description parsed, in bytes.
pub const MAX_SDP_BYTES: usize = 64 * 1024;
/// Most media sections in one description.
pub const MAX_MEDIA: usize = 16;
/// Most attributes in one description (all sections together).
pub const MAX_ATTRIBUTES: usize = 512;

/// Base64 that accepts input with or without `=` padding (cameras send both).
const LENIENT_BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Errors from parsing or building a session description. Lines count from 1.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SdpError {
    /// The description does not start with a `v=` line.
    MissingVersion,
    /// A field is not valid.
    Invalid {
        /// Line number (0 when the problem is not tied to one line).
        line: usize,
        /// The field, e.g. `"m= port"` or `"rtpmap clock rate"`.
        field: &'static str,
        /// What was found (cut to 64 bytes).
        value: String,
    },
    /// A size limit was exceeded.
    TooLarge {
        /// What was too large: `"description"`, `"media sections"`, `"attributes"`.
        what: &'static str,
        /// The limit.
        limit: usize,
    },
    /// A media section needs a field it does not have.
    Missing {
        /// Index of the media section.
        media: usize,
        /// The missing field, e.g. `"rtpmap"`, `"fmtp config"`.
        field: &'static str,
    },
    /// No format of the media section is a codec rill handles.
    UnsupportedCodec {
        /// Index of the media section.
        media: usize,
        /// The encoding name(s) found.
        name: String,
    },
}

impl fmt::Display for SdpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SdpError::MissingVersion => write!(f, "sdp: description does not start with v="),
            SdpError::Invalid { line, field, value } => {
                write!(f, "sdp: invalid {field} {value:?} on line {line}")
            }
            SdpError::TooLarge { what, limit } => write!(f, "sdp: more {what} than {limit}"),
            SdpError::Missing { media, field } => {
                write!(f, "sdp: media section {media} has no {field}")
            }
            SdpError::UnsupportedCodec { media, name } => {
                write!(
                    f,
                    "sdp: media section {media} has no supported codec ({name})"
                )
            }
        }
    }
}

impl std::error::Error for SdpError {}

fn invalid(line: usize, field: &'static str, value: &str) -> SdpError {
    let mut end = value.len().min(64);
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    SdpError::Invalid {
        line,
        field,
        value: value.get(..end).unwrap_or_default().to_owned(),
    }
}

/// An `a=` line: `name` or `name:value`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attribute {
    /// The attribute name.
    pub name: String,
    /// The value after the first `:`, if any.
    pub value: Option<String>,
}

/// One `m=` section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MediaDescription {
    /// Media type: `video`, `audio`, `application`...
    pub media: String,
    /// Port (0 in RTSP descriptions).
    pub port: u16,
    /// Transport protocol, e.g. `RTP/AVP`.
    pub protocol: String,
    /// Formats (payload type numbers for RTP).
    pub formats: Vec<String>,
    /// The `c=` line value, if the section has one.
    pub connection: Option<String>,
    /// The `b=` line values.
    pub bandwidth: Vec<String>,
    /// Attributes in order.
    pub attributes: Vec<Attribute>,
}

/// A whole session description.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionDescription {
    /// `o=` value.
    pub origin: String,
    /// `s=` value.
    pub name: String,
    /// Session-level `c=` value.
    pub connection: Option<String>,
    /// `t=` value (`0 0` when generated).
    pub timing: String,
    /// Session-level attributes.
    pub attributes: Vec<Attribute>,
    /// Media sections.
    pub media: Vec<MediaDescription>,
}

/// An `a=rtpmap:` value: payload type, encoding name, clock rate, channels.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RtpMap {
    /// Payload type.
    pub payload_type: u8,
    /// Encoding name as written (compare case-insensitively).
    pub encoding: String,
    /// Clock rate in Hz (never 0).
    pub clock_rate: u32,
    /// Channels (1 when not given).
    pub channels: u8,
}

fn find_attr<'a>(attrs: &'a [Attribute], name: &str) -> Option<&'a str> {
    attrs
        .iter()
        .find(|a| a.name.eq_ignore_ascii_case(name))
        .map(|a| a.value.as_deref().unwrap_or(""))
}

impl SessionDescription {
    /// Parses a description.
    pub fn parse(text: &[u8]) -> Result<Self, SdpError> {
        if text.len() > MAX_SDP_BYTES {
            return Err(SdpError::TooLarge {
                what: "description bytes",
                limit: MAX_SDP_BYTES,
            });
        }
        let text = String::from_utf8_lossy(text);
        let mut lines = text
            .split('\n')
            .enumerate()
            .map(|(i, l)| (i + 1, l.trim()))
            .filter(|(_, l)| !l.is_empty());
        match lines.next() {
            Some((n, l)) if l.starts_with("v=") => {
                if l.get(2..).map(str::trim) != Some("0") {
                    return Err(invalid(n, "v= version", l));
                }
            }
            _ => return Err(SdpError::MissingVersion),
        }
        let mut sd = SessionDescription {
            origin: String::new(),
            name: String::new(),
            connection: None,
            timing: String::new(),
            attributes: Vec::new(),
            media: Vec::new(),
        };
        let mut attr_count = 0usize;
        for (n, line) in lines {
            let Some((kind, value)) = line.split_once('=') else {
                continue; // Junk line: ignore.
            };
            let value = value.trim();
            let media = sd.media.last_mut();
            match (kind.trim(), media) {
                ("m", _) => {
                    if sd.media.len() >= MAX_MEDIA {
                        return Err(SdpError::TooLarge {
                            what: "media sections",
                            limit: MAX_MEDIA,
                        });
                    }
                    sd.media.push(parse_media_line(n, value)?);
                }
                ("a", m) => {
                    attr_count += 1;
                    if attr_count > MAX_ATTRIBUTES {
                        return Err(SdpError::TooLarge {
                            what: "attributes",
                            limit: MAX_ATTRIBUTES,
                        });
                    }
                    let (name, v) = match value.split_once(':') {
                        Some((a, b)) => (a.trim(), Some(b.trim().to_owned())),
                        None => (value, None),
                    };
                    let attr = Attribute {
                        name: name.to_owned(),
                        value: v,
                    };
                    match m {
                        Some(m) => m.attributes.push(attr),
                        None => sd.attributes.push(attr),
                    }
                }
                ("c", Some(m)) => m.connection = Some(value.to_owned()),
                ("c", None) => sd.connection = Some(value.to_owned()),
                ("b", Some(m)) => m.bandwidth.push(value.to_owned()),
                ("o", None) => sd.origin = value.to_owned(),
                ("s", None) => sd.name = value.to_owned(),
                ("t", None) => sd.timing = value.to_owned(),
                _ => {}
            }
        }
        Ok(sd)
    }

    /// A description of rill's tracks: one media section per `(params, control)`.
    pub fn for_tracks(name: &str, tracks: &[(TrackParams, String)]) -> Self {
        SessionDescription {
            origin: "- 0 0 IN IP4 127.0.0.1".to_owned(),
            name: if name.is_empty() { "-" } else { name }.to_owned(),
            connection: Some("IN IP4 0.0.0.0".to_owned()),
            timing: "0 0".to_owned(),
            attributes: vec![
                Attribute {
                    name: "tool".to_owned(),
                    value: Some("rill".to_owned()),
                },
                Attribute {
                    name: "control".to_owned(),
                    value: Some("*".to_owned()),
                },
            ],
            media: tracks
                .iter()
                .map(|(p, c)| MediaDescription::from_track(p, c))
                .collect(),
        }
    }

    /// A session-level attribute's value (`""` for a flag).
    pub fn attribute(&self, name: &str) -> Option<&str> {
        find_attr(&self.attributes, name)
    }

    /// The session-level `a=control`, if any.
    pub fn control(&self) -> Option<&str> {
        self.attribute("control")
    }

    /// The SDP text (CRLF line ends).
    pub fn to_text(&self) -> String {
        self.to_string()
    }
}

fn write_attrs(f: &mut fmt::Formatter<'_>, attrs: &[Attribute]) -> fmt::Result {
    for a in attrs {
        match &a.value {
            Some(v) => write!(f, "a={}:{}\r\n", a.name, v)?,
            None => write!(f, "a={}\r\n", a.name)?,
        }
    }
    Ok(())
}

impl fmt::Display for SessionDescription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v=0\r\no={}\r\ns={}\r\n", self.origin, self.name)?;
        if let Some(c) = &self.connection {
            write!(f, "c={c}\r\n")?;
        }
        write!(f, "t={}\r\n", self.timing)?;
        write_attrs(f, &self.attributes)?;
        for m in &self.media {
            write!(
                f,
                "m={} {} {} {}\r\n",
                m.media,
                m.port,
                m.protocol,
                m.formats.join(" ")
            )?;
            if let Some(c) = &m.connection {
                write!(f, "c={c}\r\n")?;
            }
            for b in &m.bandwidth {
                write!(f, "b={b}\r\n")?;
            }
            write_attrs(f, &m.attributes)?;
        }
        Ok(())
    }
}

fn parse_media_line(n: usize, value: &str) -> Result<MediaDescription, SdpError> {
    let mut it = value.split_ascii_whitespace();
    let media = it.next().ok_or_else(|| invalid(n, "m= line", value))?;
    let port = it.next().ok_or_else(|| invalid(n, "m= port", value))?;
    // "port/count" is allowed.
    let port = port
        .split('/')
        .next()
        .and_then(|p| p.parse::<u16>().ok())
        .ok_or_else(|| invalid(n, "m= port", port))?;
    let protocol = it.next().ok_or_else(|| invalid(n, "m= protocol", value))?;
    let formats: Vec<String> = it.take(64).map(str::to_owned).collect();
    Ok(MediaDescription {
        media: media.to_owned(),
        port,
        protocol: protocol.to_owned(),
        formats,
        connection: None,
        bandwidth: Vec::new(),
        attributes: Vec::new(),
    })
}

/// Splits `a=fmtp` parameters `k=v;k=v` (keys lowercased, whitespace trimmed).
pub fn parse_fmtp_params(params: &str) -> Vec<(String, String)> {
    params
        .split(';')
        .filter_map(|kv| {
            let kv = kv.trim();
            if kv.is_empty() {
                return None;
            }
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            Some((k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        })
        .collect()
}

fn param<'a>(params: &'a [(String, String)], key: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// Decodes a comma-separated list of base64 NAL units; undecodable or empty entries are
/// skipped (some cameras send junk next to valid parameter sets).
fn decode_nal_list(list: &str) -> Vec<Bytes> {
    list.split(',')
        .filter_map(|s| LENIENT_BASE64.decode(s.trim()).ok())
        .filter(|v| !v.is_empty())
        .map(Bytes::from)
        .collect()
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    let s = s.trim();
    if s.len() % 2 != 0 || s.len() > 256 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

fn small_int(params: &[(String, String)], key: &str, default: u8) -> Option<u8> {
    match param(params, key) {
        None | Some("") => Some(default),
        Some(v) => v.parse::<u8>().ok().filter(|&n| n <= 32),
    }
}

impl MediaDescription {
    /// An attribute's value (`""` for a flag).
    pub fn attribute(&self, name: &str) -> Option<&str> {
        find_attr(&self.attributes, name)
    }

    /// The `a=control` of this section, if any.
    pub fn control(&self) -> Option<&str> {
        self.attribute("control")
    }

    /// The `a=rtpmap` for `payload_type`, or the static mapping for payload types 0 (PCMU) and 8
    /// (PCMA). A clock rate of 0 or one that is not a number is an error.
    pub fn rtpmap(&self, payload_type: u8) -> Result<Option<RtpMap>, SdpError> {
        for a in &self.attributes {
            if !a.name.eq_ignore_ascii_case("rtpmap") {
                continue;
            }
            let v = a.value.as_deref().unwrap_or("");
            let Some((pt, rest)) = v.split_once(char::is_whitespace) else {
                continue;
            };
            if pt.trim().parse::<u8>().ok() != Some(payload_type) {
                continue;
            }
            let mut parts = rest.trim().split('/');
            let encoding = parts.next().unwrap_or("").trim().to_owned();
            let rate = parts.next().unwrap_or("").trim();
            let clock_rate = rate
                .parse::<u32>()
                .ok()
                .filter(|&r| r > 0)
                .ok_or_else(|| invalid(0, "rtpmap clock rate", rate))?;
            let channels = match parts.next().map(str::trim) {
                None | Some("") => 1,
                Some(c) => c
                    .parse::<u8>()
                    .ok()
                    .filter(|&c| c > 0)
                    .ok_or_else(|| invalid(0, "rtpmap channels", c))?,
            };
            return Ok(Some(RtpMap {
                payload_type,
                encoding,
                clock_rate,
                channels,
            }));
        }
        let fixed = match payload_type {
            0 => "PCMU",
            8 => "PCMA",
            _ => return Ok(None),
        };
        Ok(Some(RtpMap {
            payload_type,
            encoding: fixed.to_owned(),
            clock_rate: 8000,
            channels: 1,
        }))
    }

    /// The `a=fmtp` parameters for `payload_type` (empty when there are none).
    pub fn fmtp(&self, payload_type: u8) -> Vec<(String, String)> {
        self.attributes
            .iter()
            .filter(|a| a.name.eq_ignore_ascii_case("fmtp"))
            .filter_map(|a| a.value.as_deref())
            .filter_map(|v| v.split_once(char::is_whitespace))
            .find(|(pt, _)| pt.trim().parse::<u8>().ok() == Some(payload_type))
            .map(|(_, rest)| parse_fmtp_params(rest))
            .unwrap_or_default()
    }

    /// The track parameters of the first format of this section (index `index` in the
    /// description, for errors) that is a codec rill handles.
    pub fn track_params(&self, index: usize) -> Result<TrackParams, SdpError> {
        let mut names = Vec::new();
        for f in &self.formats {
            let Ok(pt) = f.parse::<u8>() else { continue };
            if pt > 127 {
                continue;
            }
            let Some(map) = self.rtpmap(pt)? else {
                continue;
            };
            let fmtp = self.fmtp(pt);
            let name = map.encoding.to_ascii_uppercase();
            let mut channels = map.channels;
            let codec = match name.as_str() {
                "H264" => {
                    if param(&fmtp, "packetization-mode").is_some_and(|m| m.trim() == "2") {
                        return Err(invalid(0, "H264 packetization-mode", "2"));
                    }
                    let mut sps = Vec::new();
                    let mut pps = Vec::new();
                    for nal in decode_nal_list(param(&fmtp, "sprop-parameter-sets").unwrap_or("")) {
                        match nal.first().map(|b| b & 0x1F) {
                            Some(7) => sps.push(nal),
                            Some(8) => pps.push(nal),
                            _ => {}
                        }
                    }
                    CodecParams::H264 { sps, pps }
                }
                "H265" | "HEVC" => {
                    let list = |k| decode_nal_list(param(&fmtp, k).unwrap_or(""));
                    CodecParams::H265 {
                        vps: list("sprop-vps"),
                        sps: list("sprop-sps"),
                        pps: list("sprop-pps"),
                    }
                }
                "MPEG4-GENERIC" => {
                    let config = param(&fmtp, "config").ok_or(SdpError::Missing {
                        media: index,
                        field: "fmtp config",
                    })?;
                    let config = decode_hex(config)
                        .filter(|c| !c.is_empty())
                        .ok_or_else(|| invalid(0, "fmtp config", config))?;
                    let size_length = small_int(&fmtp, "sizelength", 13)
                        .filter(|&n| n > 0)
                        .ok_or_else(|| invalid(0, "fmtp sizelength", "out of range"))?;
                    let index_length = small_int(&fmtp, "indexlength", 3)
                        .ok_or_else(|| invalid(0, "fmtp indexlength", "out of range"))?;
                    let index_delta_length = small_int(&fmtp, "indexdeltalength", 3)
                        .ok_or_else(|| invalid(0, "fmtp indexdeltalength", "out of range"))?;
                    CodecParams::Aac {
                        config: Bytes::from(config),
                        size_length,
                        index_length,
                        index_delta_length,
                    }
                }
                "MP4A-LATM" => {
                    // cpresent defaults to 1 (configuration in band), which rill does not read.
                    let cpresent = param(&fmtp, "cpresent").unwrap_or("1").trim();
                    if cpresent != "0" {
                        return Err(invalid(0, "MP4A-LATM cpresent", cpresent));
                    }
                    let hex = param(&fmtp, "config").ok_or(SdpError::Missing {
                        media: index,
                        field: "MP4A-LATM fmtp config",
                    })?;
                    let mux = decode_hex(hex)
                        .and_then(|c| StreamMuxConfig::parse(&c).ok())
                        .ok_or_else(|| invalid(0, "MP4A-LATM config", hex))?;
                    // The rtpmap's channel count is optional (GStreamer leaves it out).
                    if let Ok(asc) = AudioSpecificConfig::parse(&mux.audio_specific_config) {
                        channels = asc.channel_count().max(1);
                    }
                    CodecParams::AacLatm {
                        config: mux.audio_specific_config,
                        sub_frames: mux.sub_frames,
                    }
                }
                // profile, level-idx and tier describe the stream; the sequence header
                // comes in band.
                "AV1" => CodecParams::Av1 {
                    config: Bytes::new(),
                },
                "PCMA" => CodecParams::G711A,
                "PCMU" => CodecParams::G711U,
                "OPUS" => CodecParams::Opus,
                _ => {
                    names.push(map.encoding);
                    continue;
                }
            };
            return Ok(TrackParams {
                payload_type: pt,
                clock_rate: map.clock_rate,
                channels,
                codec,
            });
        }
        Err(SdpError::UnsupportedCodec {
            media: index,
            name: names.join(","),
        })
    }

    /// The media section describing a track of rill's, with `a=control:{control}`.
    pub fn from_track(params: &TrackParams, control: &str) -> Self {
        let pt = params.payload_type;
        let mut attrs = Vec::new();
        let mut attr = |name: &str, value: String| {
            attrs.push(Attribute {
                name: name.to_owned(),
                value: Some(value),
            })
        };
        let b64 = |list: &[Bytes]| {
            list.iter()
                .map(|n| STANDARD.encode(n))
                .collect::<Vec<_>>()
                .join(",")
        };
        let (media, rtpmap, fmtp) = match &params.codec {
            CodecParams::H264 { sps, pps } => {
                let mut f = "packetization-mode=1".to_owned();
                if let Some(&[a, b, c]) = sps.first().and_then(|s| s.get(1..4)) {
                    let _ = write!(f, ";profile-level-id={a:02X}{b:02X}{c:02X}");
                }
                if !sps.is_empty() && !pps.is_empty() {
                    let all: Vec<Bytes> = sps.iter().chain(pps).cloned().collect();
                    let _ = write!(f, ";sprop-parameter-sets={}", b64(&all));
                }
                ("video", format!("H264/{}", params.clock_rate), Some(f))
            }
            CodecParams::H265 { vps, sps, pps } => {
                let f = if vps.is_empty() || sps.is_empty() || pps.is_empty() {
                    None
                } else {
                    Some(format!(
                        "sprop-vps={};sprop-sps={};sprop-pps={}",
                        b64(vps),
                        b64(sps),
                        b64(pps)
                    ))
                };
                ("video", format!("H265/{}", params.clock_rate), f)
            }
            CodecParams::Aac {
                config,
                size_length,
                index_length,
                index_delta_length,
            } => {
                let hex: String = config.iter().map(|b| format!("{b:02X}")).collect();
                (
                    "audio",
                    format!("MPEG4-GENERIC/{}/{}", params.clock_rate, params.channels),
                    Some(format!(
                        "profile-level-id=1;mode=AAC-hbr;sizelength={size_length};indexlength={index_length};indexdeltalength={index_delta_length};config={hex}"
                    )),
                )
            }
            CodecParams::AacLatm { config, .. } => {
                let hex = StreamMuxConfig::write(config)
                    .ok()
                    .map(|c| c.iter().map(|b| format!("{b:02X}")).collect::<String>());
                (
                    "audio",
                    format!("MP4A-LATM/{}/{}", params.clock_rate, params.channels),
                    hex.map(|h| format!("profile-level-id=30;cpresent=0;config={h}")),
                )
            }
            CodecParams::G711A | CodecParams::G711U => {
                let name = if params.codec == CodecParams::G711A {
                    "PCMA"
                } else {
                    "PCMU"
                };
                let map = if params.channels > 1 {
                    format!("{name}/{}/{}", params.clock_rate, params.channels)
                } else {
                    format!("{name}/{}", params.clock_rate)
                };
                ("audio", map, None)
            }
            CodecParams::Av1 { config } => {
                // profile, level-idx and tier of the av1C record (seq_profile,
                // seq_level_idx_0, seq_tier_0).
                let fmtp = match config.get(1..3) {
                    Some(&[profile_level, flags]) => Some(format!(
                        "profile={};level-idx={};tier={}",
                        profile_level >> 5,
                        profile_level & 0x1F,
                        flags >> 7
                    )),
                    _ => None,
                };
                ("video", format!("AV1/{}", params.clock_rate), fmtp)
            }
            CodecParams::Opus => (
                "audio",
                format!("opus/{}/2", params.clock_rate),
                (params.channels > 1).then(|| "sprop-stereo=1".to_owned()),
            ),
        };
        attr("rtpmap", format!("{pt} {rtpmap}"));
        if let Some(f) = fmtp {
            attr("fmtp", format!("{pt} {f}"));
        }
        attr("control", control.to_owned());
        MediaDescription {
            media: media.to_owned(),
            port: 0,
            protocol: "RTP/AVP".to_owned(),
            formats: vec![pt.to_string()],
            connection: None,
            bandwidth: Vec::new(),
            attributes: attrs,
        }
    }
}

/// Resolves an `a=control` value against a base URL (RFC 2326 appendix C.1.1): `*` or an empty
/// value is the base itself, an absolute `rtsp://` / `rtsps://` URL stands alone, anything else
/// is appended to the base after a `/`. The base is the `Content-Base` (or `Content-Location`,
/// or the request URL) of the DESCRIBE answer.
pub fn resolve_control(base: &str, control: &str) -> String {
    let control = control.trim();
    let lower = control.get(..8).unwrap_or(control).to_ascii_lowercase();
    if lower.starts_with("rtsp://") || lower.starts_with("rtsps://") {
        return control.to_owned();
    }
    if control.is_empty() || control == "*" {
        return base.to_owned();
    }
    let base = base.trim_end_matches('/');
    let control = control.trim_start_matches('/');
    format!("{base}/{control}")
}

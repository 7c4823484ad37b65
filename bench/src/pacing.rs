//! Real-time pacing of a publisher: which FLV tag goes out when, and how timestamps continue
//! when the file loops.
//!
//! Pure logic: the caller supplies the elapsed time of its monotonic clock.

use rill_core::flv::{frame_from_audio_tag, frame_from_video_tag, Tag, TagType};
use rill_core::media::FrameKind;

/// Interval assumed between the last tag of one loop and the first of the next when the file
/// has fewer than two video tags to measure it from, in milliseconds.
const DEFAULT_GAP_MS: u64 = 40;

/// What a tag is for, as far as looping cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TagRole {
    /// A coded audio or video frame: sent on every loop.
    Media,
    /// Script data or a decoder configuration (sequence header): sent on the first loop only.
    Config,
    /// An end-of-sequence marker: never sent when looping (it would end the stream mid-way).
    EndOfSequence,
}

/// Classifies a tag. Tags that do not parse are treated as media (sent as they are).
pub fn tag_role(tag: &Tag) -> TagRole {
    let frame = match tag.tag_type {
        TagType::Script => return TagRole::Config,
        TagType::Video => frame_from_video_tag(tag.timestamp, &tag.body),
        TagType::Audio => frame_from_audio_tag(tag.timestamp, &tag.body),
    };
    match frame {
        Ok(Some(f)) if f.kind == FrameKind::Config => TagRole::Config,
        Ok(Some(f)) if f.kind == FrameKind::EndOfSequence => TagRole::EndOfSequence,
        _ => TagRole::Media,
    }
}

/// A tag with the time it is due.
#[derive(Clone, Copy, Debug)]
pub struct Scheduled<'a> {
    /// The tag.
    pub tag: &'a Tag,
    /// Its output timestamp: milliseconds since the first tag of the first loop. It is also when
    /// the tag is due on the publisher's clock (send it once that much time has passed since
    /// publishing started). Send it as `out_ts as u32` (RTMP timestamps wrap).
    pub out_ts: u64,
    /// Which pass over the file this is (0 for the first).
    pub iteration: u64,
}

/// The tags of a file in sending order, looped or not, with continuous output timestamps.
#[derive(Clone, Debug)]
pub struct Playlist {
    tags: Vec<(Tag, TagRole)>,
    first_ts: u32,
    period_ms: u64,
    looping: bool,
    index: usize,
    iteration: u64,
}

impl Playlist {
    /// A playlist over `tags` (in file order). With `looping`, one pass lasts from the first
    /// media timestamp to the last plus one video frame interval, and later passes skip
    /// configuration tags.
    pub fn new(tags: Vec<Tag>, looping: bool) -> Self {
        let tags: Vec<(Tag, TagRole)> = tags
            .into_iter()
            .map(|t| {
                let role = tag_role(&t);
                (t, role)
            })
            .collect();
        let media = || {
            tags.iter()
                .filter(|(t, r)| *r == TagRole::Media && t.tag_type != TagType::Script)
        };
        let first_ts = media().map(|(t, _)| t.timestamp).min().unwrap_or(0);
        let last_ts = media().map(|(t, _)| t.timestamp).max().unwrap_or(0);
        let video: Vec<u32> = media()
            .filter(|(t, _)| t.tag_type == TagType::Video)
            .map(|(t, _)| t.timestamp)
            .collect();
        let gap = match (video.iter().min(), video.iter().max()) {
            (Some(lo), Some(hi)) if video.len() >= 2 => {
                u64::from(hi - lo) / (video.len() as u64 - 1)
            }
            _ => DEFAULT_GAP_MS,
        }
        .clamp(1, 1000);
        let mut playlist = Playlist {
            tags,
            first_ts,
            period_ms: u64::from(last_ts - first_ts) + gap,
            looping,
            index: 0,
            iteration: 0,
        };
        playlist.skip_unsent();
        playlist
    }

    /// How long one pass over the file lasts, in milliseconds.
    pub fn period_ms(&self) -> u64 {
        self.period_ms
    }

    /// The next tag to send, or `None` at the end of a file that does not loop.
    pub fn peek(&self) -> Option<Scheduled<'_>> {
        let (tag, _) = self.tags.get(self.index)?;
        let rel = u64::from(tag.timestamp.saturating_sub(self.first_ts));
        Some(Scheduled {
            tag,
            out_ts: rel + self.iteration * self.period_ms,
            iteration: self.iteration,
        })
    }

    /// Moves past the tag [`peek`](Self::peek) gave.
    pub fn advance(&mut self) {
        if self.index < self.tags.len() {
            self.index += 1;
            self.skip_unsent();
        }
    }

    /// Moves `index` to the next tag this pass sends, wrapping to the next pass when looping.
    fn skip_unsent(&mut self) {
        // Two passes at most: a file with no media tags sends nothing after its first pass.
        for _ in 0..2 {
            while let Some((_, role)) = self.tags.get(self.index) {
                let sent = match role {
                    TagRole::Media => true,
                    TagRole::Config => self.iteration == 0,
                    TagRole::EndOfSequence => !self.looping,
                };
                if sent {
                    return;
                }
                self.index += 1;
            }
            let has_media = self.tags.iter().any(|(_, r)| *r == TagRole::Media);
            if !self.looping || !has_media {
                return;
            }
            self.index = 0;
            self.iteration += 1;
        }
    }
}

/// How long to wait, in microseconds, until a tag due at `out_ts_ms` (since publishing started)
/// is due, given `elapsed_us` since then. `None` when it is due now.
pub fn wait_us(out_ts_ms: u64, elapsed_us: u64) -> Option<u64> {
    let due_us = out_ts_ms.saturating_mul(1000);
    (due_us > elapsed_us).then(|| due_us - elapsed_us)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn video(ts: u32, packet_type: u8) -> Tag {
        Tag {
            tag_type: TagType::Video,
            timestamp: ts,
            body: Bytes::from(vec![0x17, packet_type, 0, 0, 0, 0, 0, 0, 1, 0x65]),
        }
    }

    fn audio(ts: u32, packet_type: u8) -> Tag {
        Tag {
            tag_type: TagType::Audio,
            timestamp: ts,
            body: Bytes::from(vec![0xAF, packet_type, 0x12, 0x10]),
        }
    }

    fn script() -> Tag {
        Tag {
            tag_type: TagType::Script,
            timestamp: 0,
            body: Bytes::from_static(b"\x02\x00\x0aonMetaData\x05"),
        }
    }

    fn drain(p: &mut Playlist, n: usize) -> Vec<(u64, TagType, u64)> {
        let mut out = Vec::new();
        for _ in 0..n {
            let Some(s) = p.peek() else { break };
            out.push((s.out_ts, s.tag.tag_type, s.iteration));
            p.advance();
        }
        out
    }

    #[test]
    fn roles() {
        assert_eq!(tag_role(&script()), TagRole::Config);
        assert_eq!(tag_role(&video(0, 0)), TagRole::Config);
        assert_eq!(tag_role(&video(0, 1)), TagRole::Media);
        assert_eq!(tag_role(&video(0, 2)), TagRole::EndOfSequence);
        assert_eq!(tag_role(&audio(0, 0)), TagRole::Config);
        assert_eq!(tag_role(&audio(0, 1)), TagRole::Media);
    }

    #[test]
    fn single_pass_sends_everything_then_ends() {
        let tags = vec![
            script(),
            video(0, 0),
            audio(0, 0),
            video(0, 1),
            video(40, 1),
            video(80, 2),
        ];
        let mut p = Playlist::new(tags, false);
        let got = drain(&mut p, 100);
        assert_eq!(got.len(), 6);
        assert_eq!(got.last().map(|g| g.0), Some(80));
        assert!(p.peek().is_none());
    }

    #[test]
    fn looping_keeps_timestamps_continuous_and_skips_configs() {
        // Timestamps start at 1000 in the file: output starts at 0.
        let tags = vec![
            script(),
            video(1000, 0),
            audio(1000, 0),
            video(1000, 1),
            audio(1010, 1),
            video(1040, 1),
            video(1080, 1),
            video(1080, 2),
        ];
        let mut p = Playlist::new(tags, true);
        assert_eq!(p.period_ms(), 80 + 40);
        let got = drain(&mut p, 14);
        let ts: Vec<u64> = got.iter().map(|g| g.0).collect();
        // Pass 0: script, 2 configs and 4 media (end of sequence skipped); pass 1: media only.
        assert_eq!(
            ts,
            vec![0, 0, 0, 0, 10, 40, 80, 120, 130, 160, 200, 240, 250, 280]
        );
        let iterations: Vec<u64> = got.iter().map(|g| g.2).collect();
        assert_eq!(iterations[6], 0);
        assert_eq!(iterations[7], 1);
        assert_eq!(iterations[11], 2);
        // Output timestamps never go backwards across loop boundaries.
        assert!(ts.windows(2).all(|w| w[0] <= w[1]));
    }

    #[test]
    fn playlist_without_media_ends_even_when_looping() {
        let mut p = Playlist::new(vec![script(), video(0, 0)], true);
        assert_eq!(drain(&mut p, 10).len(), 2);
        assert!(p.peek().is_none());
        let mut empty = Playlist::new(Vec::new(), true);
        assert!(empty.peek().is_none());
        empty.advance();
        assert!(empty.peek().is_none());
    }

    #[test]
    fn waits() {
        assert_eq!(wait_us(40, 0), Some(40_000));
        assert_eq!(wait_us(40, 39_999), Some(1));
        assert_eq!(wait_us(40, 40_000), None);
        assert_eq!(wait_us(40, 1_000_000), None);
        assert_eq!(wait_us(u64::MAX, 0), Some(u64::MAX));
    }
}

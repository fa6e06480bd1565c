//! Reads of the target's memory, never pausing it, and the decoding of the
//! few object kinds the walker needs (`str`, `bytes`, C strings).

use std::io::IoSliceMut;

use nix::sys::uio::{process_vm_readv, RemoteIoVec};
use nix::unistd::Pid;

use super::layout::Layout;

/// A read of the target's memory failed or came back short, or what it
/// returned makes no sense (torn or garbage memory).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct ReadFailed;

/// Longer names or filenames are garbage read from torn memory.
const MAX_TEXT: usize = 64 * 1024;
/// Larger line tables are garbage (CPython's biggest are a few hundred KiB).
const MAX_BYTES: usize = 4 * 1024 * 1024;
/// Longer type names are garbage.
const MAX_C_STRING: usize = 256;

/// The memory of one process.
pub(super) struct Memory {
    pid: Pid,
    /// For the fuzz target and its tests: "remote memory" that is a buffer
    /// of this process, read by copying instead of by `process_vm_readv`
    /// (a system call per read made the walker target run at ~150
    /// executions a second). Reads outside it fail, as reads of unmapped
    /// memory do.
    #[cfg(any(test, fuzzing))]
    local: Option<Vec<u8>>,
}

impl Memory {
    pub(super) fn new(pid: u32) -> Self {
        Memory {
            pid: Pid::from_raw(pid as i32),
            #[cfg(any(test, fuzzing))]
            local: None,
        }
    }

    /// Memory that is `bytes`, at the address where they lie.
    #[cfg(any(test, fuzzing))]
    pub(super) fn local(bytes: Vec<u8>) -> Self {
        Memory {
            pid: Pid::from_raw(std::process::id() as i32),
            local: Some(bytes),
        }
    }

    /// A read of local memory: all of it, or `ReadFailed` as from
    /// `process_vm_readv` when any part lies outside.
    #[cfg(any(test, fuzzing))]
    fn read_local(bytes: &[u8], parts: &mut [(usize, &mut [u8])]) -> Result<(), ReadFailed> {
        let base = bytes.as_ptr() as usize;
        for (address, buf) in parts.iter_mut() {
            let from = address.checked_sub(base).ok_or(ReadFailed)?;
            let end = from.checked_add(buf.len()).ok_or(ReadFailed)?;
            buf.copy_from_slice(bytes.get(from..end).ok_or(ReadFailed)?);
        }
        Ok(())
    }

    pub(super) fn pid(&self) -> Pid {
        self.pid
    }

    /// Reads each `(remote address, buffer)` pair, all in one system call.
    pub(super) fn read(&self, parts: &mut [(usize, &mut [u8])]) -> Result<(), ReadFailed> {
        if parts.iter().any(|(base, _)| *base == 0) {
            return Err(ReadFailed);
        }
        #[cfg(any(test, fuzzing))]
        if let Some(bytes) = &self.local {
            return Self::read_local(bytes, parts);
        }
        let remote: Vec<RemoteIoVec> = parts
            .iter()
            .map(|(base, buf)| RemoteIoVec {
                base: *base,
                len: buf.len(),
            })
            .collect();
        let wanted: usize = remote.iter().map(|r| r.len).sum();
        let mut local: Vec<IoSliceMut> = parts
            .iter_mut()
            .map(|(_, buf)| IoSliceMut::new(buf))
            .collect();
        match process_vm_readv(self.pid, &mut local, &remote) {
            Ok(n) if n == wanted => Ok(()),
            _ => Err(ReadFailed),
        }
    }

    pub(super) fn word(&self, address: usize) -> Result<usize, ReadFailed> {
        let mut buf = [0u8; 8];
        self.read(&mut [(address, &mut buf[..])])?;
        Ok(usize::from_ne_bytes(buf))
    }

    pub(super) fn int(&self, address: usize) -> Result<i32, ReadFailed> {
        let mut buf = [0u8; 4];
        self.read(&mut [(address, &mut buf[..])])?;
        Ok(i32::from_ne_bytes(buf))
    }

    /// A `str` object's text.
    pub(super) fn text(&self, layout: &Layout, address: usize) -> Result<String, ReadFailed> {
        // The head of a non-compact string is followed by its data pointer.
        let mut head = [0u8; 96];
        let head = &mut head[..layout.compact_size + 8];
        self.read(&mut [(address, &mut head[..])])?;
        let length = word(head, layout.unicode_length);
        let state = u32::from_ne_bytes(
            head[layout.unicode_state..][..4]
                .try_into()
                .expect("four bytes"),
        );
        // The state bit fields, the same from 3.10 to 3.14: interned (2
        // bits), kind (3), compact (1), ascii (1).
        let kind = ((state >> 2) & 7) as usize;
        let compact = state & (1 << 5) != 0;
        let ascii = state & (1 << 6) != 0;
        if !matches!(kind, 1 | 2 | 4) || length > MAX_TEXT {
            return Err(ReadFailed);
        }
        let data = if compact && ascii {
            address.wrapping_add(layout.ascii_size)
        } else if compact {
            address.wrapping_add(layout.compact_size)
        } else {
            word(head, layout.compact_size)
        };
        let mut raw = vec![0u8; length * kind];
        self.read(&mut [(data, &mut raw[..])])?;
        match kind {
            // Names and filenames are nearly always ASCII: the bytes are the text.
            1 if raw.is_ascii() => String::from_utf8(raw).map_err(|_| ReadFailed),
            _ => decode_text(&raw, kind).ok_or(ReadFailed),
        }
    }

    /// A `bytes` object's contents.
    pub(super) fn bytes(&self, layout: &Layout, address: usize) -> Result<Vec<u8>, ReadFailed> {
        let size = self.word(address.wrapping_add(layout.bytes_size))?;
        if size > MAX_BYTES {
            return Err(ReadFailed);
        }
        let mut raw = vec![0u8; size];
        self.read(&mut [(address.wrapping_add(layout.bytes_data), &mut raw[..])])?;
        Ok(raw)
    }

    /// A NUL-terminated C string (a type's `tp_name`).
    pub(super) fn c_string(&self, address: usize) -> Result<String, ReadFailed> {
        let mut text = Vec::new();
        // Read in small pieces: the string may end just before unmapped memory.
        for piece in 0..MAX_C_STRING / 32 {
            let mut buf = [0u8; 32];
            self.read(&mut [(address.wrapping_add(piece * 32), &mut buf[..])])?;
            match buf.iter().position(|&b| b == 0) {
                Some(end) => {
                    text.extend_from_slice(&buf[..end]);
                    return String::from_utf8(text).map_err(|_| ReadFailed);
                }
                None => text.extend_from_slice(&buf),
            }
        }
        Err(ReadFailed)
    }
}

pub(super) fn decode_text(raw: &[u8], kind: usize) -> Option<String> {
    match kind {
        1 => {
            // Latin-1 as UTF-8: one byte, or two for the upper half.
            let mut utf8 = Vec::with_capacity(raw.len() * 2);
            for &b in raw {
                if b < 0x80 {
                    utf8.push(b);
                } else {
                    utf8.extend_from_slice(&[0xC0 | (b >> 6), 0x80 | (b & 0x3F)]);
                }
            }
            String::from_utf8(utf8).ok()
        }
        2 => {
            let units: Vec<u16> = raw
                .chunks_exact(2)
                .map(|c| u16::from_ne_bytes([c[0], c[1]]))
                .collect();
            String::from_utf16(&units).ok()
        }
        4 => raw
            .chunks_exact(4)
            .map(|c| char::from_u32(u32::from_ne_bytes([c[0], c[1], c[2], c[3]])))
            .collect(),
        _ => None,
    }
}

pub(super) fn word(bytes: &[u8], offset: usize) -> usize {
    usize::from_ne_bytes(bytes[offset..][..8].try_into().expect("eight bytes"))
}

pub(super) fn int(bytes: &[u8], offset: usize) -> i32 {
    i32::from_ne_bytes(bytes[offset..][..4].try_into().expect("four bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_of_every_kind_decodes() {
        assert_eq!(decode_text(b"handler", 1).as_deref(), Some("handler"));
        assert_eq!(decode_text(&[0xe9], 1).as_deref(), Some("é"));
        let two: Vec<u8> = "Ωmega".encode_utf16().flat_map(u16::to_ne_bytes).collect();
        assert_eq!(decode_text(&two, 2).as_deref(), Some("Ωmega"));
        let four: Vec<u8> = "🔥x"
            .chars()
            .flat_map(|c| (c as u32).to_ne_bytes())
            .collect();
        assert_eq!(decode_text(&four, 4).as_deref(), Some("🔥x"));
        assert_eq!(
            decode_text(&0xD800u32.to_ne_bytes(), 4),
            None,
            "a surrogate is torn memory"
        );
    }

    #[test]
    fn reading_an_unmapped_address_fails_cleanly() {
        let memory = Memory::new(std::process::id());
        let mut buf = [0u8; 16];
        assert!(memory.read(&mut [(8, &mut buf[..])]).is_err());
        assert!(memory.read(&mut [(0, &mut buf[..])]).is_err());
        assert!(memory.c_string(8).is_err());
    }

    #[test]
    fn local_memory_reads_as_remote_memory_does() {
        let bytes: Vec<u8> = (0..64).collect();
        let base = bytes.as_ptr() as usize;
        let remote = Memory::new(std::process::id());
        let local = Memory::local(bytes.clone());
        let local_base = match &local.local {
            Some(bytes) => bytes.as_ptr() as usize,
            None => unreachable!(),
        };
        // The same reads, at the same offsets into each copy.
        for (offset, len) in [
            (0, 8),
            (8, 16),
            (56, 8),
            (60, 8),
            (64, 1),
            (usize::MAX - 4, 8),
        ] {
            let read = |memory: &Memory, base: usize| {
                let mut a = vec![0u8; len];
                let mut b = [0u8; 4];
                let at = base.wrapping_add(offset);
                memory
                    .read(&mut [(base, &mut b[..]), (at, &mut a[..])])
                    .map(|()| (a, b))
            };
            let inside = offset.checked_add(len).is_some_and(|end| end <= 64);
            assert_eq!(read(&local, local_base).is_ok(), inside, "{offset}+{len}");
            if inside {
                assert_eq!(read(&local, local_base), read(&remote, base));
            }
        }
        assert_eq!(
            local.word(local_base + 8),
            Ok(usize::from_ne_bytes([8, 9, 10, 11, 12, 13, 14, 15]))
        );
        assert!(local.word(local_base - 8).is_err());
    }

    #[test]
    fn a_c_string_is_read_up_to_its_nul() {
        let memory = Memory::new(std::process::id());
        let name = b"_asyncio.FutureIter\0";
        assert_eq!(
            memory.c_string(name.as_ptr() as usize).as_deref(),
            Ok("_asyncio.FutureIter")
        );
    }
}

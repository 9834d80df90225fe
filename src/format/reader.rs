//! Bounds-checked little-endian cursor used by every parser. Must NOT index or slice in ways that
//! can panic: running past the end is a `FormatError::Truncated`, never a panic.

use super::FormatError;

pub(crate) struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Reader { rest: bytes }
    }

    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], FormatError> {
        if n > self.rest.len() {
            return Err(FormatError::Truncated);
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], FormatError> {
        self.take(N)?.try_into().map_err(|_| FormatError::Truncated)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, FormatError> {
        Ok(u8::from_le_bytes(self.array()?))
    }

    pub(crate) fn u16(&mut self) -> Result<u16, FormatError> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    pub(crate) fn u32(&mut self) -> Result<u32, FormatError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    pub(crate) fn u64(&mut self) -> Result<u64, FormatError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    pub(crate) fn remaining(&self) -> usize {
        self.rest.len()
    }

    /// Reserved fields must be zero so that every accepted byte string has exactly one meaning.
    pub(crate) fn zeros(&mut self, n: usize, what: &'static str) -> Result<(), FormatError> {
        if self.take(n)?.iter().any(|&b| b != 0) {
            return Err(FormatError::Invalid(what));
        }
        Ok(())
    }

    pub(crate) fn finish(&self) -> Result<(), FormatError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(FormatError::Invalid("trailing bytes"))
        }
    }
}

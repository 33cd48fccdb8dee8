//! The growable array that holds a shard's slab: on the heap while small, in a mapping of its
//! own once large, where it grows without copying.
//!
//! A table growing under a flood of new connections grows its slabs again and again. A
//! `Vec` grows by asking the allocator for a larger block, which (for a block in the middle
//! of the allocator's heap, as glibc gives a worker thread's) means a fresh block, every page
//! of it faulted in anew, and a copy of everything so far: measured on a SYN flood into an
//! empty table, the copies and the extra page faults took more than a quarter of the time.
//! From [`MAP_MIN`] bytes on Linux, a [`Store`] moves its elements into an anonymous mapping
//! of its own and grows that with `mremap`, which moves the pages themselves (already faulted
//! in) to a larger range: no copy, and each page is faulted in once, the new ones in one call
//! (see [`Store::commit_spare`]). When the kernel refuses a mapping, the store asks the
//! allocator instead, whose error is then the error.
//!
//! The mapped memory does not go through the global allocator, so an allocator that counts
//! or caps what it hands out does not see it; [`crate::Conntrack::memory`] counts it.

use std::collections::TryReserveError;
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;

/// Stores of at least this many bytes live in a mapping of their own (on Linux).
pub(crate) const MAP_MIN: usize = 256 << 10;

/// A growable array of plain data (`Copy`, nothing to drop): the parts of `Vec` that the
/// slab uses, with growth that does not copy once the array is large (see the module).
pub(crate) struct Store<T> {
    ptr: NonNull<T>,
    len: usize,
    cap: usize,
    /// Bytes of the mapping that holds the elements, or 0 while they are in a `Vec`'s heap
    /// block (`ptr` and `cap` are then that `Vec`'s).
    mapped: usize,
    /// From how many bytes on the elements move to a mapping ([`MAP_MIN`]; tests lower it).
    map_min: usize,
}

// SAFETY: a `Store` owns its elements as a `Vec` does (nothing else points into its block or
// mapping), so it may move to another thread when they may, and be shared when they may be.
unsafe impl<T: Send> Send for Store<T> {}
// SAFETY: as above: `&Store` gives only `&T` access.
unsafe impl<T: Sync> Sync for Store<T> {}

impl<T> Store<T> {
    /// An empty store.
    pub(crate) fn new() -> Self {
        Self::with_map_min(MAP_MIN)
    }

    /// An empty store that moves to a mapping from `map_min` bytes on.
    pub(crate) fn with_map_min(map_min: usize) -> Self {
        const { assert!(size_of::<T>() > 0, "a store holds sized elements") };
        Store::adopt(Vec::new(), map_min)
    }

    /// A store holding `v`'s elements in `v`'s heap block.
    fn adopt(v: Vec<T>, map_min: usize) -> Self {
        let mut v = std::mem::ManuallyDrop::new(v);
        let (len, cap) = (v.len(), v.capacity());
        // A `Vec`'s pointer is never null, even before it allocates.
        let ptr = NonNull::new(v.as_mut_ptr()).unwrap_or(NonNull::dangling());
        Store {
            ptr,
            len,
            cap,
            mapped: 0,
            map_min,
        }
    }

    /// Gives the heap block back as the `Vec` it came from (the store is left empty, with no
    /// block). Only while the elements are on the heap.
    fn take_vec(&mut self) -> Vec<T> {
        debug_assert_eq!(self.mapped, 0);
        // SAFETY: while `mapped` is 0, `ptr`, `len` and `cap` are those of a `Vec<T>` that
        // `adopt` took apart (or of its growth by `reserve_heap`), and that nothing else owns;
        // the store forgets them here, so the block is owned once.
        let v = unsafe { Vec::from_raw_parts(self.ptr.as_ptr(), self.len, self.cap) };
        self.ptr = NonNull::dangling();
        self.len = 0;
        self.cap = 0;
        v
    }

    /// Number of elements.
    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Elements it can hold without growing.
    #[inline]
    pub(crate) fn capacity(&self) -> usize {
        self.cap
    }

    /// True when the elements are in a mapping of their own.
    #[cfg(test)]
    pub(crate) fn is_mapped(&self) -> bool {
        self.mapped != 0
    }

    /// Lets the mapping go (the store is left empty, with no block).
    fn unmap(&mut self) {
        #[cfg(all(target_os = "linux", not(miri)))]
        if self.mapped != 0 {
            // SAFETY: `ptr` and `mapped` describe a mapping this store made and owns whole;
            // nothing refers into it once the store forgets it just below.
            unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.mapped) };
        }
        self.ptr = NonNull::dangling();
        self.len = 0;
        self.cap = 0;
        self.mapped = 0;
    }
}

impl<T: Copy> Store<T> {
    /// How many elements a full store grows by: a quarter on the heap, where growing may
    /// copy everything; a sixteenth once in a mapping (or about to move to one), where it
    /// copies nothing, so that a large slab holds about 3% of room on average where a quarter
    /// left about 11%.
    #[inline]
    pub(crate) fn growth(&self) -> usize {
        if self.len.saturating_mul(size_of::<T>()) >= self.map_min {
            (self.len / 16).max(4)
        } else {
            (self.len / 4).max(4)
        }
    }

    /// Appends `x`, growing by [`Store::growth`] first if full.
    #[inline]
    pub(crate) fn push(&mut self, x: T) -> Result<(), TryReserveError> {
        if self.len == self.cap {
            self.try_reserve_exact(self.growth())?;
        }
        // SAFETY: `len < cap` now, so slot `len` lies inside the block or mapping, which
        // holds `cap` elements' worth of bytes aligned for `T`.
        unsafe { self.ptr.as_ptr().add(self.len).write(x) };
        self.len += 1;
        Ok(())
    }

    /// Makes room for at least `additional` more elements. On failure nothing changes.
    pub(crate) fn try_reserve_exact(&mut self, additional: usize) -> Result<(), TryReserveError> {
        if self.cap - self.len >= additional {
            return Ok(());
        }
        let want = self.len.saturating_add(additional);
        if want.saturating_mul(size_of::<T>()) >= self.map_min && self.map(want) {
            return Ok(());
        }
        self.reserve_heap(want)
    }

    /// Commits the pages of the room beyond the elements now, in one sweep, so that no page
    /// fault waits for the pushes that fill it (see `Shard::commit_spare`). A mapping's room
    /// is asked for in one call (`MADV_POPULATE_WRITE`, Linux 5.14 and later), which spares
    /// the fault taken for each page that writing it would cost; a heap block's room (or a
    /// mapping's, on an older kernel) is written with zeros. Either way the room holds zeros
    /// after (a mapping's room is never written before: elements are only ever appended), and
    /// `len` stays.
    pub(crate) fn commit_spare(&mut self) {
        if self.mapped != 0 && self.populate() {
            return;
        }
        // SAFETY: slots `len..cap` lie inside the block or mapping (`cap` elements' worth of
        // bytes); writing bytes there changes no element, and no reference to them exists
        // (`&mut self`).
        unsafe {
            self.ptr
                .as_ptr()
                .add(self.len)
                .write_bytes(0, self.cap - self.len)
        };
    }

    /// Asks the kernel to fault in the mapping's pages from the first one the room touches;
    /// false when it cannot (an older kernel).
    #[cfg(all(target_os = "linux", not(miri)))]
    fn populate(&mut self) -> bool {
        const PAGE: usize = 4096;
        let used = self.len * size_of::<T>();
        let from = used - used % PAGE;
        if from >= self.mapped {
            return true;
        }
        // SAFETY: the range lies inside the store's own mapping (`from` is page-aligned and
        // below `mapped`); populating for write faults its pages in as writing them would,
        // and changes no byte of them.
        let r = unsafe {
            libc::madvise(
                self.ptr.as_ptr().cast::<u8>().add(from).cast(),
                self.mapped - from,
                libc::MADV_POPULATE_WRITE,
            )
        };
        r == 0
    }

    #[cfg(not(all(target_os = "linux", not(miri))))]
    fn populate(&mut self) -> bool {
        false
    }

    /// Grows the heap block to hold `want` elements (the allocator may move and copy them).
    fn reserve_heap(&mut self, want: usize) -> Result<(), TryReserveError> {
        if self.mapped != 0 {
            // The kernel refused to grow the mapping: back to the heap, copying once.
            let mut v: Vec<T> = Vec::new();
            v.try_reserve_exact(want)?;
            v.extend_from_slice(self);
            let map_min = self.map_min;
            self.unmap();
            *self = Store::adopt(v, map_min);
            return Ok(());
        }
        let mut v = self.take_vec();
        let r = v.try_reserve_exact(want - v.len());
        // The block is the store's again whether it grew or not.
        let map_min = self.map_min;
        *self = Store::adopt(v, map_min);
        r
    }

    /// Moves or grows the elements into a mapping of at least `want` elements; false (nothing
    /// changed) when the kernel refuses, or off Linux and under Miri, which have no mappings.
    #[cfg(all(target_os = "linux", not(miri)))]
    fn map(&mut self, want: usize) -> bool {
        const PAGE: usize = 4096;
        let Some(bytes) = want
            .checked_mul(size_of::<T>())
            .and_then(|b| b.checked_next_multiple_of(PAGE))
            .filter(|&b| b <= isize::MAX as usize)
        else {
            return false;
        };
        let p = if self.mapped != 0 {
            // SAFETY: `ptr` and `mapped` describe a mapping this store made and owns whole;
            // MREMAP_MAYMOVE lets the kernel move it (the store then uses the new address
            // only). Its contents are kept, and the new range beyond is zero-filled.
            unsafe {
                libc::mremap(
                    self.ptr.as_ptr().cast(),
                    self.mapped,
                    bytes,
                    libc::MREMAP_MAYMOVE,
                )
            }
        } else {
            // SAFETY: a fresh private anonymous mapping at an address the kernel picks: it
            // overlaps nothing the program uses.
            unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    bytes,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                )
            }
        };
        if p == libc::MAP_FAILED {
            return false;
        }
        let Some(new) = NonNull::new(p.cast::<T>()) else {
            return false; // never: the kernel does not map page 0 for us
        };
        if self.mapped == 0 {
            let v = self.take_vec();
            // SAFETY: the mapping is new (no overlap with the heap block), page-aligned (so
            // aligned for `T`, whose alignment is at most a page) and holds `bytes >= want *
            // size_of::<T>()` bytes, room for `v.len() <= want` elements.
            unsafe { std::ptr::copy_nonoverlapping(v.as_ptr(), new.as_ptr(), v.len()) };
            self.len = v.len();
            // `v` frees the heap block (its elements are plain data).
        }
        self.ptr = new;
        self.mapped = bytes;
        self.cap = bytes / size_of::<T>();
        true
    }

    #[cfg(not(all(target_os = "linux", not(miri))))]
    fn map(&mut self, _want: usize) -> bool {
        false
    }
}

impl<T> Drop for Store<T> {
    fn drop(&mut self) {
        if self.mapped != 0 {
            self.unmap();
        } else {
            drop(self.take_vec());
        }
    }
}

impl<T> Deref for Store<T> {
    type Target = [T];
    #[inline]
    fn deref(&self) -> &[T] {
        // SAFETY: the first `len` slots of the block or mapping hold initialised elements
        // (written by `push`, or copied or kept by growth), `ptr` is aligned and non-null,
        // and `&self` keeps them from changing.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl<T> DerefMut for Store<T> {
    #[inline]
    fn deref_mut(&mut self) -> &mut [T] {
        // SAFETY: as for `deref`, with `&mut self` making the access unique.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl<T: std::fmt::Debug> std::fmt::Debug for Store<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn grows_past_the_mapping_threshold_keeping_every_element() {
        // 100 KiB of u64 before it maps, then growth by pushes and reservations.
        let mut s: Store<u64> = Store::with_map_min(100 << 10);
        for i in 0..200_000u64 {
            s.push(i * 3).unwrap();
        }
        assert_eq!(s.is_mapped(), cfg!(all(target_os = "linux", not(miri))));
        s.try_reserve_exact(1_000_000).unwrap();
        assert!(s.capacity() >= 1_200_000);
        s.commit_spare();
        for i in 200_000..1_200_000u64 {
            s.push(i * 3).unwrap();
        }
        assert!(s.iter().enumerate().all(|(i, &x)| x == i as u64 * 3));
        s[7] = 1;
        assert_eq!(s.get(7), Some(&1));
        assert_eq!(s.get(1_200_000), None);
    }

    #[test]
    fn a_refused_reservation_changes_nothing() {
        let mut s: Store<u64> = Store::with_map_min(4096);
        for i in 0..1000 {
            s.push(i).unwrap();
        }
        let cap = s.capacity();
        assert!(s.try_reserve_exact(usize::MAX / 2).is_err());
        assert_eq!(s.capacity(), cap);
        assert!(s.iter().copied().eq(0..1000));
        // And on the heap.
        let mut h: Store<u64> = Store::with_map_min(usize::MAX);
        h.push(5).unwrap();
        assert!(h.try_reserve_exact(usize::MAX / 2).is_err());
        assert_eq!(&h[..], &[5]);
    }

    /// Small enough for Miri, which runs the heap half (it has no mappings).
    #[test]
    fn heap_store_behaves_as_a_vec() {
        let mut s: Store<(u32, u16)> = Store::new();
        let mut v = Vec::new();
        for i in 0..50u32 {
            s.push((i, i as u16 * 7)).unwrap();
            v.push((i, i as u16 * 7));
        }
        s.try_reserve_exact(100).unwrap();
        s.commit_spare();
        s[3].0 = 99;
        v[3].0 = 99;
        assert_eq!(&s[..], &v[..]);
        assert!(s.capacity() >= 150);
        assert_eq!(format!("{:?}", s), format!("{:?}", v));
    }

    proptest! {
        /// Any sequence of pushes, reservations, writes and spare zeroing leaves the same
        /// elements as a `Vec` given the same, with mappings from a low threshold.
        #[test]
        fn store_matches_a_vec(
            map_min in prop_oneof![Just(0usize), Just(4096), Just(64 << 10), Just(usize::MAX)],
            ops in proptest::collection::vec((0u8..4, 0usize..20_000, any::<u32>()), 0..60),
        ) {
            let mut s: Store<u32> = Store::with_map_min(map_min);
            let mut v: Vec<u32> = Vec::new();
            for (op, n, x) in ops {
                match op {
                    0 => {
                        for k in 0..n % 3000 {
                            s.push(x ^ k as u32).unwrap();
                            v.push(x ^ k as u32);
                        }
                    }
                    1 => {
                        s.try_reserve_exact(n).unwrap();
                        prop_assert!(s.capacity() >= s.len() + n);
                    }
                    2 => {
                        if !v.is_empty() {
                            let i = n % v.len();
                            s[i] = x;
                            v[i] = x;
                        }
                    }
                    _ => s.commit_spare(),
                }
                prop_assert_eq!(&s[..], &v[..]);
            }
        }
    }
}

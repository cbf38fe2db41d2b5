//! The `vivified-server` binary's global allocator: mimalloc, entered the way the
//! standard library enters `malloc`.
//!
//! The `mimalloc` crate hands every allocation to `mi_malloc_aligned`, whatever its
//! alignment. In mimalloc 3 that entry point has a fast path only for a small block
//! whose page has a free block at hand; otherwise (an empty free list, any block over
//! 1 KiB) it takes the generic path and, for a size that is not a power of two,
//! over-allocates `size + align - 1` bytes and marks the page as holding interior
//! pointers. On `POST /plugins/register` that was 16 of a request's ~120 allocations
//! and 6 % of its instructions (callgrind; `docs/PERFORMANCE.md`).
//!
//! Every mimalloc block of at least 16 bytes is 16-byte aligned, and an 8-byte block
//! is 8-byte aligned (`MI_MAX_ALIGN_SIZE`, mimalloc's size classes), so a layout
//! whose alignment is at most 16 and at most its size is served by plain `mi_malloc`,
//! as `std::alloc::System` serves such layouts by plain `malloc`. Anything else goes to
//! the aligned entry points, as before.
//!
//! This crate is the workspace's only unsafe code.

use core::alloc::{GlobalAlloc, Layout};
use core::ffi::c_void;

use libmimalloc_sys as mi;

/// The alignment every mimalloc block of at least this many bytes has.
const MIN_ALIGN: usize = 16;

/// mimalloc as the global allocator; see the crate documentation.
#[derive(Clone, Copy, Debug, Default)]
pub struct MiMalloc;

/// Whether plain (unaligned) mimalloc entry points already give `align`.
#[inline]
fn plain(align: usize, size: usize) -> bool {
    align <= MIN_ALIGN && align <= size
}

// SAFETY: every method forwards to mimalloc, which returns null or a block of at least
// the requested size, aligned as asked: by its aligned entry points, or by its size
// classes when `plain` holds (see the crate documentation; the tests check it). Blocks
// from any of its entry points are freed and reallocated by `mi_free`/`mi_realloc*`.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for MiMalloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: mimalloc accepts any size and a power-of-two alignment (`Layout`'s).
        unsafe {
            if plain(layout.align(), layout.size()) {
                mi::mi_malloc(layout.size()).cast()
            } else {
                mi::mi_malloc_aligned(layout.size(), layout.align()).cast()
            }
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as `alloc`.
        unsafe {
            if plain(layout.align(), layout.size()) {
                mi::mi_zalloc(layout.size()).cast()
            } else {
                mi::mi_zalloc_aligned(layout.size(), layout.align()).cast()
            }
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: the caller passes a block this allocator returned.
        unsafe { mi::mi_free(ptr.cast::<c_void>()) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller passes a block this allocator returned with `layout`; a
        // block kept in place keeps its alignment, a new one is aligned as `alloc`'s.
        unsafe {
            if plain(layout.align(), new_size) {
                mi::mi_realloc(ptr.cast::<c_void>(), new_size).cast()
            } else {
                mi::mi_realloc_aligned(ptr.cast::<c_void>(), new_size, layout.align()).cast()
            }
        }
    }
}

#[cfg(test)]
#[allow(unsafe_code)]
mod tests {
    use super::*;

    const SIZES: [usize; 24] = [
        1,
        2,
        3,
        7,
        8,
        9,
        12,
        15,
        16,
        17,
        24,
        31,
        33,
        48,
        100,
        255,
        1000,
        1023,
        1025,
        1200,
        4095,
        5000,
        70_000,
        1 << 20,
    ];
    const ALIGNS: [usize; 9] = [1, 2, 4, 8, 16, 32, 64, 128, 4096];

    fn fill(p: *mut u8, len: usize, seed: u8) {
        for i in 0..len {
            // SAFETY: `p` points to at least `len` writable bytes.
            unsafe { p.add(i).write(seed.wrapping_add(i as u8)) };
        }
    }

    fn holds(p: *const u8, len: usize, seed: u8) -> bool {
        // SAFETY: `p` points to at least `len` initialised bytes.
        (0..len).all(|i| unsafe { p.add(i).read() } == seed.wrapping_add(i as u8))
    }

    #[test]
    fn every_layout_is_aligned_writable_and_freed() {
        let a = MiMalloc;
        for &align in &ALIGNS {
            for &size in SIZES.iter().filter(|&&s| s % align == 0 || s > align) {
                let layout = Layout::from_size_align(size, align).unwrap();
                // Several at once, so that blocks come from inside pages, not only
                // from their (well aligned) starts.
                let blocks: Vec<*mut u8> = (0..8)
                    .map(|n| {
                        // SAFETY: `layout` has a non-zero size.
                        let p = unsafe { a.alloc(layout) };
                        assert!(!p.is_null());
                        assert_eq!(p as usize % align, 0, "size {size} align {align}");
                        fill(p, size, n);
                        p
                    })
                    .collect();
                for (n, &p) in blocks.iter().enumerate() {
                    assert!(holds(p, size, n as u8), "size {size} align {align}");
                    // SAFETY: allocated above with `layout`.
                    unsafe { a.dealloc(p, layout) };
                }
            }
        }
    }

    #[test]
    fn zeroed_blocks_are_zero() {
        let a = MiMalloc;
        for &align in &ALIGNS {
            for &size in &SIZES {
                let layout = Layout::from_size_align(size, align).unwrap();
                // Dirty a block of the same class first, so a reused one would show.
                // SAFETY: non-zero size; freed at once.
                unsafe {
                    let dirty = a.alloc(layout);
                    fill(dirty, size, 0xa5);
                    a.dealloc(dirty, layout);
                }
                // SAFETY: non-zero size.
                let p = unsafe { a.alloc_zeroed(layout) };
                assert!(!p.is_null());
                assert_eq!(p as usize % align, 0);
                // SAFETY: `size` bytes were just allocated.
                assert!((0..size).all(|i| unsafe { p.add(i).read() } == 0));
                // SAFETY: allocated above with `layout`.
                unsafe { a.dealloc(p, layout) };
            }
        }
    }

    #[test]
    fn realloc_keeps_contents_and_alignment() {
        let a = MiMalloc;
        for &align in &ALIGNS {
            for &from in &SIZES {
                for &to in &SIZES {
                    let layout = Layout::from_size_align(from, align).unwrap();
                    // SAFETY: non-zero size.
                    let p = unsafe { a.alloc(layout) };
                    fill(p, from, 7);
                    // SAFETY: `p` was allocated with `layout`; `to` is non-zero.
                    let q = unsafe { a.realloc(p, layout, to) };
                    assert!(!q.is_null());
                    assert_eq!(q as usize % align, 0, "{from} -> {to} align {align}");
                    assert!(holds(q, from.min(to), 7), "{from} -> {to} align {align}");
                    let new_layout = Layout::from_size_align(to, align).unwrap();
                    // SAFETY: `q` now holds `new_layout`.
                    unsafe { a.dealloc(q, new_layout) };
                }
            }
        }
    }
}

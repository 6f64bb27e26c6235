//! The `server` binary's allocator: mimalloc (a ping makes ~30 allocations; glibc's
//! malloc and free took a sixth of its instructions), called the way mimalloc's own
//! `realloc` calls itself.
//!
//! The `mimalloc` crate sends every allocation through `mi_malloc_aligned`. In mimalloc 3
//! that call's fallback, taken whenever the size class's free list is empty at that
//! moment (about one allocation in five on a ping), allocates the size plus the alignment
//! and marks the page as holding interior pointers, unless the block size is a power of
//! two. So a 40-byte, 8-aligned request took a 48-byte block the slow way. Every mimalloc
//! block is at least word-aligned, so alignments up to a word need no aligned call:
//! `mi_realloc_aligned` makes the same test before it reallocates plainly.

use libmimalloc_sys::{
    mi_free, mi_malloc, mi_malloc_aligned, mi_realloc_aligned, mi_zalloc, mi_zalloc_aligned,
};
use std::alloc::{GlobalAlloc, Layout};
use std::ffi::c_void;

/// Every mimalloc block is aligned to at least this (its block sizes are whole words).
const WORD: usize = std::mem::size_of::<usize>();

/// mimalloc as a [`GlobalAlloc`]; install it with `#[global_allocator]`.
pub struct MiMalloc;

// SAFETY: each method hands the request to mimalloc's function for it, which returns a
// block of at least `size` bytes at the requested alignment, or null; plain `mi_malloc`
// only for alignments that every mimalloc block meets.
unsafe impl GlobalAlloc for MiMalloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        unsafe { by_alignment(layout, mi_malloc, mi_malloc_aligned) }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        unsafe { by_alignment(layout, mi_zalloc, mi_zalloc_aligned) }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        unsafe { mi_free(ptr.cast::<c_void>()) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        unsafe { mi_realloc_aligned(ptr.cast::<c_void>(), new_size, layout.align()).cast() }
    }
}

/// `plain` for alignments every block meets, `aligned` for the others.
#[inline(always)]
unsafe fn by_alignment(
    layout: Layout,
    plain: unsafe extern "C" fn(usize) -> *mut c_void,
    aligned: unsafe extern "C" fn(usize, usize) -> *mut c_void,
) -> *mut u8 {
    unsafe {
        if layout.align() <= WORD {
            plain(layout.size()).cast()
        } else {
            aligned(layout.size(), layout.align()).cast()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every size class up to 64 KiB and every alignment up to 4 KiB: aligned, usable
    /// memory; zeroed when asked; contents kept across a reallocation, which keeps the
    /// alignment.
    #[test]
    fn blocks_are_aligned_usable_and_kept_across_realloc() {
        let sizes = (1..=256)
            .chain((9..=16).map(|shift| 1usize << shift))
            .chain([40, 72, 100, 1000, 4095, 4097, 65_535]);
        for size in sizes {
            for align in (0..=12).map(|shift| 1usize << shift) {
                let layout = Layout::from_size_align(size, align).unwrap();
                unsafe {
                    let p = MiMalloc.alloc(layout);
                    assert!(!p.is_null(), "{size} bytes at {align}");
                    assert_eq!(p as usize % align, 0, "{size} bytes at {align}");
                    std::ptr::write_bytes(p, 0xa5, size);

                    let grown = size * 3 + 1;
                    let q = MiMalloc.realloc(p, layout, grown);
                    assert!(!q.is_null());
                    assert_eq!(q as usize % align, 0, "{size} → {grown} bytes at {align}");
                    assert!((0..size).all(|i| *q.add(i) == 0xa5), "{size} bytes kept");
                    std::ptr::write_bytes(q, 0x5a, grown);
                    MiMalloc.dealloc(q, Layout::from_size_align(grown, align).unwrap());

                    let z = MiMalloc.alloc_zeroed(layout);
                    assert!(!z.is_null());
                    assert_eq!(z as usize % align, 0, "zeroed {size} bytes at {align}");
                    assert!((0..size).all(|i| *z.add(i) == 0), "{size} bytes zeroed");
                    MiMalloc.dealloc(z, layout);
                }
            }
        }
    }

    /// Many word-aligned blocks of one size alive at once, freed in an interleaved order
    /// and taken again: the reuse path (an empty free list, a page's freed blocks
    /// collected) hands out distinct, aligned blocks.
    #[test]
    fn reused_blocks_stay_distinct_and_aligned() {
        let layout = Layout::from_size_align(40, 8).unwrap();
        unsafe {
            let mut live: Vec<*mut u8> = (0..10_000).map(|_| MiMalloc.alloc(layout)).collect();
            for round in 0..4 {
                for p in live.iter_mut().skip(round % 2).step_by(2) {
                    MiMalloc.dealloc(*p, layout);
                    *p = MiMalloc.alloc(layout);
                }
                for (i, p) in live.iter().enumerate() {
                    assert!(!p.is_null() && (*p as usize).is_multiple_of(8));
                    std::ptr::write_bytes(*p, (i % 251) as u8, 40);
                }
                for (i, p) in live.iter().enumerate() {
                    assert!(
                        (0..40).all(|k| *p.add(k) == (i % 251) as u8),
                        "block {i} overlaps another"
                    );
                }
            }
            for p in live {
                MiMalloc.dealloc(p, layout);
            }
        }
    }
}

//! The global allocator: mimalloc, called the way its C interface is fastest.
//!
//! The `mimalloc` crate passes every allocation to `mi_malloc_aligned`, whose quick path only
//! serves blocks of up to 1 KiB; anything larger (read buffers, the request and response
//! heads, a connection's task, timers) went through its generic aligned path at ~170
//! instructions an allocation, five times a proxied request (2.8% of a shard's work under
//! `bench/shard-instructions.sh`). An alignment that plain `mi_malloc` already guarantees, a
//! machine word, is asked of `mi_malloc`; only stricter ones go to the aligned calls.

use std::alloc::{GlobalAlloc, Layout};
use std::ffi::c_void;

use libmimalloc_sys as mi;

/// What `mi_malloc` aligns every block to: a machine word, since every block size is a whole
/// number of words and pages start 16-aligned. Not 16 bytes, as `std`'s system allocator may
/// assume of malloc: mimalloc has 24-, 40- and 56-byte size classes, whose blocks are laid
/// end to end.
const MALLOC_ALIGN: usize = std::mem::size_of::<usize>();

pub struct Mimalloc;

/// Whether `mi_malloc` alone gives `align`.
fn malloc_aligns(align: usize) -> bool {
    align <= MALLOC_ALIGN
}

// SAFETY: every call forwards to mimalloc, which returns null on failure, frees what it
// allocated whichever entry point allocated it, and honours the alignment asked (directly, or
// by `mi_malloc`'s guarantee, see `malloc_aligns`).
unsafe impl GlobalAlloc for Mimalloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: see the impl.
        unsafe {
            if malloc_aligns(layout.align()) {
                mi::mi_malloc(layout.size()).cast()
            } else {
                mi::mi_malloc_aligned(layout.size(), layout.align()).cast()
            }
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: see the impl.
        unsafe {
            if malloc_aligns(layout.align()) {
                mi::mi_zalloc(layout.size()).cast()
            } else {
                mi::mi_zalloc_aligned(layout.size(), layout.align()).cast()
            }
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: see the impl; `ptr` came from this allocator.
        unsafe { mi::mi_free(ptr.cast::<c_void>()) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: see the impl; `ptr` came from this allocator with `layout`.
        unsafe {
            if malloc_aligns(layout.align()) {
                mi::mi_realloc(ptr.cast::<c_void>(), new_size).cast()
            } else {
                mi::mi_realloc_aligned(ptr.cast::<c_void>(), new_size, layout.align()).cast()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::malloc_aligns;

    /// Blocks of every size and alignment from this allocator (the test binary's global one)
    /// are aligned as asked, survive growing and shrinking with their bytes, and zeroed
    /// memory is zero.
    #[test]
    fn blocks_are_aligned_and_keep_their_bytes() {
        for align in [1usize, 2, 8, 16, 32, 64, 128, 4096] {
            for size in [1usize, 7, 16, 100, 1024, 1025, 8192, 70_000] {
                let layout = std::alloc::Layout::from_size_align(size, align).expect("layout");
                // SAFETY: non-zero sizes; every block is freed with the layout it has.
                unsafe {
                    let p = std::alloc::alloc_zeroed(layout);
                    assert!(!p.is_null());
                    assert_eq!(p as usize % align, 0, "size {size} align {align}");
                    assert!(std::slice::from_raw_parts(p, size).iter().all(|&b| b == 0));
                    std::ptr::write_bytes(p, 0xA5, size);
                    let grown = std::alloc::realloc(p, layout, size * 3);
                    assert_eq!(
                        grown as usize % align,
                        0,
                        "grown, size {size} align {align}"
                    );
                    assert!(
                        std::slice::from_raw_parts(grown, size)
                            .iter()
                            .all(|&b| b == 0xA5)
                    );
                    let bigger =
                        std::alloc::Layout::from_size_align(size * 3, align).expect("layout");
                    let shrunk = std::alloc::realloc(grown, bigger, size.div_ceil(2));
                    assert_eq!(
                        shrunk as usize % align,
                        0,
                        "shrunk, size {size} align {align}"
                    );
                    let half = size.div_ceil(2);
                    assert!(
                        std::slice::from_raw_parts(shrunk, half)
                            .iter()
                            .all(|&b| b == 0xA5)
                    );
                    let small = std::alloc::Layout::from_size_align(half, align).expect("layout");
                    std::alloc::dealloc(shrunk, small);
                }
            }
        }
    }

    #[test]
    fn plain_malloc_only_for_word_alignment() {
        assert!(malloc_aligns(1));
        assert!(malloc_aligns(8));
        assert!(!malloc_aligns(16), "24-byte blocks are only 8-aligned");
        assert!(!malloc_aligns(128));
    }

    /// Many live blocks of every small size: each aligned as asked (the size classes laid end
    /// to end are where a wrong guarantee would show).
    #[test]
    fn small_blocks_in_bulk_are_aligned() {
        for align in [8usize, 16] {
            for size in (8..=1100).step_by(8) {
                let layout = std::alloc::Layout::from_size_align(size, align).expect("layout");
                let blocks: Vec<*mut u8> = (0..64)
                    // SAFETY: a non-zero size; freed below with the same layout.
                    .map(|_| unsafe { std::alloc::alloc(layout) })
                    .collect();
                for &p in &blocks {
                    assert!(!p.is_null());
                    assert_eq!(p as usize % align, 0, "size {size} align {align}");
                }
                for p in blocks {
                    // SAFETY: allocated above with `layout`.
                    unsafe { std::alloc::dealloc(p, layout) };
                }
            }
        }
    }
}

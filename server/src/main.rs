//! `server`: Taproom's command line (`taproom_server::cli`).

// mimalloc instead of glibc's malloc: a ping makes ~30 allocations, and glibc's malloc
// and free took ~5,700 of its ~33,700 instructions (docs/performance.md, "Per-request
// cost"). Its `no_thp` feature keeps it from asking for transparent huge pages, which
// took a fresh process from 20 to 34 MB of RSS.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    taproom_server::cli::main();
}

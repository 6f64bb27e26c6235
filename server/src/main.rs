//! `server`: Taproom's command line (`taproom_server::cli`).

// mimalloc instead of glibc's malloc (runtime::allocator). Its `no_thp` feature keeps it
// from asking for transparent huge pages, which took a fresh process from 20 to 34 MB of
// RSS.
#[global_allocator]
static ALLOCATOR: taproom_server::runtime::allocator::MiMalloc =
    taproom_server::runtime::allocator::MiMalloc;

fn main() {
    taproom_server::cli::main();
}

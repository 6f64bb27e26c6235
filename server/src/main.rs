//! `server`: Taproom's command line (`taproom_server::cli`).

fn main() {
    taproom_server::cli::main();
}

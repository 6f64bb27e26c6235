//! The services' SQL migrations, embedded by `build.rs` and resolved into sqlx migrators
//! the way sqlx's `migrate!` macro and `Migrator::new` resolve a directory: the same
//! versions, descriptions, types and checksums, so databases migrated by either keep
//! validating. (Not the macro itself: it builds both database drivers again for the host.)

use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::SqlStr;
use std::borrow::Cow;
use std::sync::LazyLock;

/// A service's migration files: (file name, SQL).
pub type Migrations = &'static [(&'static str, &'static str)];

/// A service's migrator, built on first use.
pub type Embedded = LazyLock<Migrator>;

/// `<service>::FILES` per directory of `migrations/`, and `ALL`.
mod files {
    use super::Migrations;
    include!(concat!(env!("OUT_DIR"), "/migrations.rs"));
}
pub use files::*;

/// The migrator for one service's files, as sqlx would resolve their directory.
pub fn migrator(files: Migrations) -> Migrator {
    Migrator::with_migrations(
        files
            .iter()
            .map(|&(name, sql)| migration(name, sql))
            .collect(),
    )
}

/// sqlx's rules (`resolve_blocking`): `<VERSION>_<DESCRIPTION>[.up|.down].sql`, the
/// description with `_` as spaces, `-- no-transaction` as the first line opting out of the
/// transaction, the checksum over the SQL as written.
fn migration(file_name: &str, sql: &'static str) -> Migration {
    let (version, rest) = file_name
        .split_once('_')
        .expect("build.rs keeps only VERSION_*.sql");
    let migration_type = MigrationType::from_filename(rest);
    let description = rest
        .trim_end_matches(migration_type.suffix())
        .replace('_', " ");
    Migration::new(
        version.parse().expect("build.rs checked the version"),
        Cow::Owned(description),
        migration_type,
        SqlStr::from_static(sql),
        sql.starts_with("-- no-transaction"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    /// Every service's embedded migrator equals what sqlx resolves from its directory
    /// (the resolver `migrate!` ran at compile time): same files, versions, descriptions,
    /// types, transaction choice, SQL and checksums.
    #[tokio::test]
    async fn embedded_migrations_resolve_as_sqlx_resolves_the_directory() {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../migrations");
        let dirs = std::fs::read_dir(&root)
            .unwrap()
            .filter(|e| e.as_ref().unwrap().path().is_dir());
        assert_eq!(
            dirs.count(),
            ALL.len(),
            "one embedded set per migrations directory"
        );
        for (service, files) in ALL {
            let ours = migrator(files);
            let sqlx = Migrator::new(root.join(service)).await.unwrap();
            assert!(!ours.migrations.is_empty(), "{service}: no migrations");
            assert_eq!(ours.migrations.len(), sqlx.migrations.len(), "{service}");
            for (a, b) in ours.iter().zip(sqlx.iter()) {
                assert_eq!(a.version, b.version, "{service}");
                assert_eq!(a.description, b.description, "{service} {}", a.version);
                assert_eq!(
                    a.migration_type, b.migration_type,
                    "{service} {}",
                    a.version
                );
                assert_eq!(a.no_tx, b.no_tx, "{service} {}", a.version);
                assert_eq!(a.sql.as_str(), b.sql.as_str(), "{service} {}", a.version);
                assert_eq!(a.checksum, b.checksum, "{service} {}", a.version);
            }
            assert_eq!(ours.locking, sqlx.locking);
            assert_eq!(ours.table_name, sqlx.table_name);
        }
    }

    #[test]
    fn names_follow_sqlx() {
        let m = migration("0003_login_throttle.sql", "select 1");
        assert_eq!((m.version, m.description.as_ref()), (3, "login throttle"));
        assert_eq!(m.migration_type, MigrationType::Simple);
        assert!(!m.no_tx);
        let m = migration("7_add_index.up.sql", "-- no-transaction\ncreate index ...");
        assert_eq!((m.version, m.description.as_ref()), (7, "add index"));
        assert_eq!(m.migration_type, MigrationType::ReversibleUp);
        assert!(m.no_tx);
    }
}

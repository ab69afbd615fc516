//! The versions the server reports: the Cog version whose runtime (coglet) it behaves as, and its own.
//!
//! `GET /` says `cog_version` (the compatible Cog version) and `cogvisor_version`; `/health-check`'s
//! `version` says `coglet` and `cogvisor`; webhooks and uploads send `coglet/<cog> (compatible;
//! cogvisor/<own>)`. The SDK's `cog.__version__` (python/cog/__init__.py) is the same Cog version; the
//! end-to-end suite checks that the two agree.

/// The Cog version cogvisor is compatible with, as a literal for `concat!` (see [`COG_VERSION`]).
#[macro_export]
macro_rules! cog_version {
    () => {
        "0.23.1"
    };
}

/// The Cog version cogvisor is compatible with: Cog's runtime coglet of this version is the
/// specification.
pub const COG_VERSION: &str = cog_version!();

/// cogvisor's own version.
pub const COGVISOR_VERSION: &str = env!("CARGO_PKG_VERSION");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sdk_reports_the_same_cog_version() {
        let sdk = include_str!("../../../python/cog/__init__.py");
        let declared = sdk
            .lines()
            .find_map(|l| l.strip_prefix("__version__ = "))
            .map(|v| v.trim().trim_matches('"'));
        assert_eq!(
            declared,
            Some(COG_VERSION),
            "python/cog/__init__.py __version__"
        );
    }

    #[test]
    fn the_user_agent_names_both_versions() {
        assert_eq!(
            crate::outbound::USER_AGENT,
            format!("coglet/{COG_VERSION} (compatible; cogvisor/{COGVISOR_VERSION})")
        );
    }
}

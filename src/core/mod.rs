//! The producer's decisions as plain state machines: no actix, no sockets, no clock (time is an
//! argument). The actors in [`crate::actors`] are shells that feed them messages and timers and
//! carry out the actions they return; `sim` (tests only) drives them with virtual time against
//! a model cluster.

pub(crate) mod accumulator;
pub(crate) mod connection;
pub(crate) mod metadata;
pub(crate) mod sender;
pub(crate) mod txn;

#[cfg(test)]
mod sim;

/// The layering rule (issue 19): a core names no actor code and no actix, so the simulation
/// can drive it and the shells stay thin. Comments may mention them; code may not.
#[cfg(test)]
mod layering {
    #[test]
    fn cores_stay_free_of_shell_code() {
        // Spelled in two halves so that this file passes its own check.
        let banned = [concat!("crate::", "actors"), concat!("act", "ix")];
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/core");
        let mut offenders = Vec::new();
        let mut files = Vec::new();
        let mut dirs = vec![root];
        while let Some(dir) = dirs.pop() {
            let entries =
                std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
            for entry in entries {
                let path = entry.map(|e| e.path()).unwrap_or_default();
                if path.is_dir() {
                    dirs.push(path);
                } else if path.extension().is_some_and(|x| x == "rs") {
                    files.push(path);
                }
            }
        }
        assert!(files.len() >= 6, "the cores: {files:?}");
        for path in files {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            for (n, line) in text.lines().enumerate() {
                let code = line.split("//").next().unwrap_or("");
                if banned.iter().any(|b| code.contains(b)) {
                    offenders.push(format!("{}:{}: {}", path.display(), n + 1, line.trim()));
                }
            }
        }
        assert!(
            offenders.is_empty(),
            "cores naming shell code:\n{}",
            offenders.join("\n")
        );
    }
}

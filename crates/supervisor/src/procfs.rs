//! The one reader of `/proc/<pid>/stat`, and of the resident set size in `/proc/<pid>/status`.
//!
//! Every function here reads the file system: call them from a blocking context
//! (`tokio::task::spawn_blocking`), not from async code, unless only a few files are read (procfs
//! answers from the kernel's memory and never waits on a disk). [`parse_stat`] and
//! [`parse_vm_rss`] themselves are pure.

/// One process as `/proc/<pid>/stat` describes it (proc(5)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcStat {
    /// Field 1.
    pub pid: u32,
    /// Field 2, without its parentheses: the executable's name, at most 15 bytes, which may itself
    /// hold spaces and parentheses.
    pub comm: String,
    /// Field 3: the state letter (`R`, `S`, `Z`, ...).
    pub state: char,
    /// Field 4.
    pub ppid: u32,
    /// Field 5: the process group.
    pub pgid: u32,
    /// Field 22: when the process started, in clock ticks after boot. With the pid it names one
    /// process for the life of the machine.
    pub start_time: u64,
}

impl ProcStat {
    /// A zombie: exited, waiting for its parent to reap it.
    pub fn is_zombie(&self) -> bool {
        self.state == 'Z'
    }
}

/// Parses the content of `/proc/<pid>/stat`. The command name is in parentheses and may itself contain
/// spaces and parentheses, so the name runs to the *last* `)` and the other fields are read after it.
pub fn parse_stat(text: &str) -> Option<ProcStat> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    if close < open {
        return None;
    }
    let pid = text[..open].trim().parse().ok()?;
    let comm = text[open + 1..close].to_string();
    let mut fields = text[close + 1..].split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    let pgid = fields.next()?.parse().ok()?;
    // `fields` is now at field 6; the start time is field 22.
    let start_time = fields.nth(16)?.parse().ok()?;
    Some(ProcStat {
        pid,
        comm,
        state,
        ppid,
        pgid,
        start_time,
    })
}

/// Reads one process's stat; `None` when it does not exist (any more) or the file cannot be parsed.
/// Blocking.
pub fn read_stat(pid: u32) -> Option<ProcStat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&text)
}

/// Every process visible in `/proc`. Processes that vanish while being read are skipped. Blocking.
pub fn all_processes() -> Vec<ProcStat> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()))
        .filter_map(read_stat)
        .collect()
}

/// The `VmRSS:` line of `/proc/<pid>/status`, in bytes (the kernel writes it in kB, that is KiB). A
/// kernel thread, or a zombie, has none.
pub fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?;
    let kib: u64 = line.trim().strip_suffix("kB")?.trim().parse().ok()?;
    kib.checked_mul(1024)
}

/// The resident set size of one process, in bytes; `None` when it does not exist (any more) or has
/// no memory of its own. One small read.
pub fn read_rss(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_vm_rss(&text)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real line from a Linux 6.x kernel, with the name changed.
    fn line(name: &str) -> String {
        format!(
            "4242 ({name}) S 1 4240 4240 0 -1 4194560 100 0 0 0 5 3 0 0 20 0 1 0 987654 1000000 200 \
             18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0"
        )
    }

    #[test]
    fn parses_every_field_it_names() {
        assert_eq!(
            parse_stat(&line("python3")),
            Some(ProcStat {
                pid: 4242,
                comm: "python3".into(),
                state: 'S',
                ppid: 1,
                pgid: 4240,
                start_time: 987654,
            })
        );
    }

    #[test]
    fn a_name_with_spaces_and_parentheses_does_not_shift_the_fields() {
        for name in ["we (ird) name", "a) S 7 7 7", ") (", "((", "tmux: server"] {
            let stat = parse_stat(&line(name)).unwrap_or_else(|| panic!("{name:?} not parsed"));
            assert_eq!(stat.comm, name);
            assert_eq!(
                (stat.state, stat.ppid, stat.pgid),
                ('S', 1, 4240),
                "{name:?}"
            );
            assert_eq!(stat.start_time, 987654, "{name:?}");
        }
    }

    #[test]
    fn a_zombie_is_recognised() {
        let text = line("sh").replacen(") S ", ") Z ", 1);
        assert!(parse_stat(&text).expect("parsed").is_zombie());
        assert!(!parse_stat(&line("sh")).expect("parsed").is_zombie());
    }

    #[test]
    fn rejects_garbage_and_truncated_lines() {
        assert_eq!(parse_stat("garbage"), None);
        assert_eq!(parse_stat(""), None);
        assert_eq!(parse_stat(") 12 (x"), None);
        assert_eq!(parse_stat("x (sh) S 1 2 3"), None);
        // Cut before the start time.
        assert_eq!(parse_stat("12 (sh) S 1 12 12 0 -1 0 0 0 0 0"), None);
    }

    #[test]
    fn the_resident_set_size_is_read_in_bytes() {
        let status = "Name:\tpython3\nVmPeak:\t  123456 kB\nVmRSS:\t   40960 kB\nRssAnon:\t 1 kB\n";
        assert_eq!(parse_vm_rss(status), Some(40960 * 1024));
        // A kernel thread or a zombie has no VmRSS line.
        assert_eq!(
            parse_vm_rss("Name:\tkthreadd\nState:\tS (sleeping)\n"),
            None
        );
        assert_eq!(parse_vm_rss("VmRSS:\tlots kB\n"), None);
        assert_eq!(parse_vm_rss("VmRSS:\t12 MB\n"), None);
        let mine = read_rss(std::process::id()).expect("our own RSS");
        assert!(mine > 1 << 20, "{mine}");
        assert_eq!(read_rss(u32::MAX), None);
    }

    #[test]
    fn reads_our_own_process() {
        let me = read_stat(std::process::id()).expect("our own stat");
        assert_eq!(me.ppid, std::os::unix::process::parent_id());
        assert!(all_processes().iter().any(|p| p.pid == me.pid));
        assert_eq!(read_stat(u32::MAX), None);
    }
}

//! The docs check: the handbook cannot rot. Every fenced block whose info string is exactly
//! `sh runnable` in `README.md` and `docs/*.md` is run against real nodes: the blocks of one file
//! in order, in ONE `bash -euo pipefail` session started in a fresh temporary directory, with
//! this build's `tandem` first on PATH, `TANDEM_LOG=warn`, `$PORT_BASE` the first of
//! [`PORTS_PER_FILE`] free consecutive loopback ports, and stdin closed. Whatever the blocks
//! started is killed with their process group at the end, pass or fail. A failure names the
//! file, the block's line, the block and everything it printed.
//!
//! Every relative link between the documents (`[x](operations.md#section)`) must name an
//! existing file and, with `#`, one of its headings.
//!
//! One test per handbook file (nextest runs them side by side); `other_docs` runs every other
//! Markdown file of `docs/`, so a page another change adds is checked without touching this file.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

/// Loopback ports reserved for one file's blocks (`$PORT_BASE` .. `$PORT_BASE + 39`): a pair,
/// a DR node and a traffic controller use about 15; the rest is room for more examples.
const PORTS_PER_FILE: u16 = 40;
/// Where `$PORT_BASE` is chosen: below the kernel's ephemeral range (32768–60999), as
/// `support::free_port` does, so no outgoing connection holds a port a block will listen on.
/// Bases are multiples of [`PORTS_PER_FILE`]: two files' ranges are the same or disjoint.
const PORT_RANGE: std::ops::Range<u16> = 20_000..32_000;
/// A file's blocks may run this long in all before the session is killed: the handbook's labs
/// take well under a minute; this only ends a block that hangs (a poll loop without a bound).
const FILE_DEADLINE: Duration = Duration::from_secs(600);
/// SIGKILL takes effect when the killed process is next scheduled: on a loaded machine a few
/// milliseconds, never seconds; past this something escaped the kill.
const GROUP_EXIT_DEADLINE: Duration = Duration::from_secs(10);
/// A reservation file older than this was left by a killed test run and may be taken again.
const STALE_RESERVATION: Duration = Duration::from_secs(3600);
/// The info string that marks a block to run, exactly as the convention writes it.
const RUNNABLE: &str = "sh runnable";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A fenced code block of a Markdown file: the line of its opening fence and its text.
#[derive(Debug, Clone)]
struct Block {
    line: usize,
    info: String,
    text: String,
}

/// An opening or closing code fence: at least three backticks or tildes, and what follows.
fn fence(line: &str) -> Option<(char, usize, &str)> {
    let trimmed = line.trim_start();
    let mark = trimmed.chars().next().filter(|c| *c == '`' || *c == '~')?;
    let count = trimmed.len() - trimmed.trim_start_matches(mark).len();
    (count >= 3).then(|| (mark, count, trimmed[count..].trim()))
}

/// Every fenced code block (``` or ~~~, at any indentation) with its info string.
fn fenced_blocks(markdown: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut open: Option<(char, usize, Block)> = None;
    for (index, line) in markdown.lines().enumerate() {
        let fenced = fence(line);
        if let Some((mark, count, block)) = open.as_mut() {
            let closes = fenced.is_some_and(|(closing, n, info)| {
                closing == *mark && n >= *count && info.is_empty()
            });
            if closes {
                blocks.extend(open.take().map(|(_, _, block)| block));
            } else {
                block.text.push_str(line);
                block.text.push('\n');
            }
        } else if let Some((mark, count, info)) = fenced {
            let block = Block {
                line: index + 1,
                info: info.to_owned(),
                text: String::new(),
            };
            open = Some((mark, count, block));
        }
    }
    blocks
}

fn runnable_blocks(markdown: &str) -> Vec<Block> {
    fenced_blocks(markdown)
        .into_iter()
        .filter(|block| block.info == RUNNABLE)
        .collect()
}

/// `PORTS_PER_FILE` consecutive loopback ports, each free when checked, held against the other
/// docs tests of this run by a reservation file in the system's temp dir (removed on drop).
struct PortRange {
    base: u16,
    reservation: PathBuf,
}

impl PortRange {
    fn reserve() -> Self {
        use std::hash::{BuildHasher, RandomState};
        let slots = (PORT_RANGE.end - PORT_RANGE.start) / PORTS_PER_FILE;
        // RandomState is seeded per process: a random first slot without another dependency.
        let first = (RandomState::new().hash_one(std::process::id()) % u64::from(slots)) as u16;
        for step in 0..slots {
            let base = PORT_RANGE.start + ((first + step) % slots) * PORTS_PER_FILE;
            let reservation = std::env::temp_dir().join(format!("tandem-docs-ports-{base}"));
            if !take_reservation(&reservation) {
                continue;
            }
            if (base..base + PORTS_PER_FILE)
                .all(|port| std::net::TcpListener::bind(("127.0.0.1", port)).is_ok())
            {
                return Self { base, reservation };
            }
            let _ = std::fs::remove_file(&reservation);
        }
        panic!("no {PORTS_PER_FILE} consecutive free loopback ports in {PORT_RANGE:?}");
    }
}

impl Drop for PortRange {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.reservation);
    }
}

/// Creates the reservation file, or takes over one a killed run left long ago.
fn take_reservation(path: &Path) -> bool {
    let created = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .is_ok();
    if created {
        return true;
    }
    let age = std::fs::metadata(path)
        .and_then(|meta| meta.modified())
        .ok()
        .and_then(|modified| SystemTime::now().duration_since(modified).ok());
    if age.is_some_and(|age| age > STALE_RESERVATION) {
        let _ = std::fs::remove_file(path);
        return std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .is_ok();
    }
    false
}

/// The outcome of running one file's blocks.
struct Failure {
    block: Block,
    /// The Markdown line of the command that failed, when the shell said.
    failed_line: Option<usize>,
    output: String,
    why: String,
    kept: PathBuf,
}

/// The session script: before each block a marker on stdout and the block's line in the
/// progress file, so a failure can be placed; a failing command's line goes there too (the ERR
/// trap). Also, for each line of the script, the Markdown line it came from (0: the harness's).
fn session_script(blocks: &[Block]) -> (String, Vec<usize>) {
    let mut script =
        "trap 'printf \"line %s\\n\" \"$LINENO\" >> \"$TANDEM_DOCS_PROGRESS\"' ERR\n".to_owned();
    let mut origin = vec![0];
    for block in blocks {
        script += &format!(
            "printf '%s\\n' {line} >> \"$TANDEM_DOCS_PROGRESS\"\n\
             printf '\\n### block at line {line}\\n'\n{text}\n",
            line = block.line,
            text = block.text
        );
        origin.extend([0, 0]);
        origin.extend((0..block.text.lines().count()).map(|index| block.line + 1 + index));
        origin.push(0);
    }
    script += "printf 'done\\n' >> \"$TANDEM_DOCS_PROGRESS\"\n";
    (script, origin)
}

/// Runs `file`'s runnable blocks; `Ok(n)` is how many ran.
fn run_file(file: &Path) -> Result<usize, Box<Failure>> {
    let markdown = std::fs::read_to_string(file).unwrap();
    let blocks = runnable_blocks(&markdown);
    if blocks.is_empty() {
        return Ok(0);
    }
    let temp = tempfile::Builder::new()
        .prefix("tandem-docs-")
        .tempdir()
        .unwrap();
    let work = temp.path().join("work");
    let bin = temp.path().join("bin");
    std::fs::create_dir(&work).unwrap();
    std::fs::create_dir(&bin).unwrap();
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_tandem"), bin.join("tandem")).unwrap();
    let script = temp.path().join("session.sh");
    let (text, origin) = session_script(&blocks);
    std::fs::write(&script, text).unwrap();
    let progress = temp.path().join("progress");
    let output_path = temp.path().join("output");
    let output = std::fs::File::create(&output_path).unwrap();
    let ports = PortRange::reserve();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    use std::os::unix::process::CommandExt;
    let mut child = Command::new("bash")
        .args(["-euo", "pipefail"])
        .arg(&script)
        .current_dir(&work)
        .env("PATH", path)
        .env("TANDEM_LOG", "warn")
        .env("PORT_BASE", ports.base.to_string())
        .env("TANDEM_DOCS_PROGRESS", &progress)
        .env_remove("TANDEM_DATA_DIR")
        .stdin(Stdio::null())
        .stdout(output.try_clone().unwrap())
        .stderr(output)
        // Its own process group: every process a block starts in the background is in it.
        .process_group(0)
        .spawn()
        .unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if started.elapsed() > FILE_DEADLINE {
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    kill_group(child.id());
    let _ = child.wait();
    drop(ports);
    let progress = std::fs::read_to_string(&progress).unwrap_or_default();
    if status.is_some_and(|status| status.success()) && progress.lines().last() == Some("done") {
        return Ok(blocks.len());
    }
    let why = match status {
        None => format!("still running after {FILE_DEADLINE:?}: killed"),
        Some(status) => format!("the session ended with {status}"),
    };
    let last_line: usize = progress
        .lines()
        .filter_map(|line| line.parse().ok())
        .next_back()
        .unwrap_or(blocks[0].line);
    let failed_line = progress
        .lines()
        .filter_map(|line| line.strip_prefix("line ")?.parse::<usize>().ok())
        .next_back()
        .and_then(|script_line| origin.get(script_line.checked_sub(1)?).copied())
        .filter(|line| *line > 0);
    let block = blocks
        .iter()
        .find(|block| block.line == last_line)
        .unwrap()
        .clone();
    let all_output = std::fs::read_to_string(&output_path).unwrap_or_default();
    let marker = format!("\n### block at line {last_line}\n");
    let output = match all_output.rfind(&marker) {
        Some(at) => all_output[at + marker.len()..].to_owned(),
        None => all_output,
    };
    // Kept for a look at the nodes' logs and data after a failure.
    let kept = temp.keep();
    Err(Box::new(Failure {
        block,
        failed_line,
        output,
        why,
        kept,
    }))
}

/// SIGKILL to the whole process group `pgid` (the session's bash and all it started), then a
/// wait until none of them runs any more, so the next file's session finds its ports free.
fn kill_group(pgid: u32) {
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{pgid}")])
        .stderr(Stdio::null())
        .status();
    let killed = Instant::now();
    while group_running(pgid) {
        assert!(
            killed.elapsed() < GROUP_EXIT_DEADLINE,
            "processes of group {pgid} still run {GROUP_EXIT_DEADLINE:?} after SIGKILL"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether a process of group `pgid` still runs (a zombie waiting to be reaped does not).
fn group_running(pgid: u32) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return false;
    };
    entries.filter_map(Result::ok).any(|entry| {
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        // After the command's name in parentheses: state, parent pid, process group.
        let after_name = stat.rsplit_once(") ").map(|(_, rest)| rest).unwrap_or("");
        let fields: Vec<&str> = after_name.split_whitespace().collect();
        matches!(fields.as_slice(), [state, _, group, ..]
            if *state != "Z" && group.parse::<u32>().ok() == Some(pgid))
    })
}

/// Runs `files` and panics once with every failure, each with its file, line, block and output.
fn check_files(files: &[PathBuf]) {
    for tool in ["bash", "curl", "python3"] {
        if Command::new(tool).arg("--version").output().is_err() {
            support::skip_without(
                tool,
                "the runnable docs use it",
                "apt-get install bash curl python3",
            );
            return;
        }
    }
    let mut report = String::new();
    for file in files {
        let name = file
            .strip_prefix(repo())
            .unwrap_or(file)
            .display()
            .to_string();
        match run_file(file) {
            Ok(count) => eprintln!("{name}: {count} runnable block(s) passed"),
            Err(failure) => {
                let command = match failure.failed_line {
                    Some(line) => format!(", the command at line {line}"),
                    None => String::new(),
                };
                report += &format!(
                    "\n{name}, block at line {line}{command} failed ({why}); the session's \
                     directory is kept in {kept}\n--- block ---\n{text}--- its output ---\n{output}\n",
                    line = failure.block.line,
                    why = failure.why,
                    kept = failure.kept.display(),
                    text = failure.block.text,
                    output = failure.output
                );
            }
        }
    }
    assert!(report.is_empty(), "runnable docs failed:{report}");
}

/// The Markdown files whose runnable blocks the suite runs: README.md and docs/*.md.
fn checked_files() -> Vec<PathBuf> {
    let mut files = vec![repo().join("README.md")];
    files.extend(markdown_in(&repo().join("docs")));
    files
}

fn markdown_in(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|entry| entry.ok().map(|entry| entry.path()))
                .filter(|path| path.extension().is_some_and(|ext| ext == "md"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// The files with a test of their own below.
const OWN_TESTS: [&str; 4] = [
    "README.md",
    "docs/operations.md",
    "docs/configuration.md",
    "docs/upgrade.md",
];

fn check_one(relative: &str) {
    let file = repo().join(relative);
    assert!(file.exists(), "{relative} is missing");
    check_files(&[file]);
}

#[test]
fn readme() {
    check_one("README.md");
}

#[test]
fn operations() {
    check_one("docs/operations.md");
}

#[test]
fn configuration() {
    check_one("docs/configuration.md");
}

#[test]
fn upgrade() {
    check_one("docs/upgrade.md");
}

/// Every docs/*.md without a test of its own (monitoring, backup, and any page added later).
#[test]
fn other_docs() {
    let own: HashSet<PathBuf> = OWN_TESTS.iter().map(|file| repo().join(file)).collect();
    let others: Vec<PathBuf> = checked_files()
        .into_iter()
        .filter(|file| !own.contains(file))
        .collect();
    check_files(&others);
}

/// GitHub's anchor for a heading: lower case; letters, digits, `-` and `_` kept, spaces to `-`,
/// everything else dropped; a repeated heading gets `-1`, `-2`...
fn anchors(markdown: &str) -> HashSet<String> {
    let mut seen = HashSet::new();
    let code: HashSet<usize> = code_lines(markdown);
    for (index, line) in markdown.lines().enumerate() {
        if code.contains(&index) {
            continue;
        }
        let hashes = line.len() - line.trim_start_matches('#').len();
        if !(1..=6).contains(&hashes) || !line[hashes..].starts_with(' ') {
            continue;
        }
        let text = line[hashes..].trim().trim_end_matches('#').trim();
        let slug: String = text
            .to_lowercase()
            .chars()
            .filter_map(|c| match c {
                ' ' => Some('-'),
                c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
                _ => None,
            })
            .collect();
        let mut unique = slug.clone();
        let mut n = 0;
        while seen.contains(&unique) {
            n += 1;
            unique = format!("{slug}-{n}");
        }
        seen.insert(unique);
    }
    seen
}

/// The 0-based indexes of lines inside fenced code blocks (fences included).
fn code_lines(markdown: &str) -> HashSet<usize> {
    let mut lines = HashSet::new();
    let mut open: Option<(char, usize)> = None;
    for (index, line) in markdown.lines().enumerate() {
        match (open, fence(line)) {
            (None, Some((mark, count, _))) => open = Some((mark, count)),
            (Some((mark, count)), Some((closing, n, ""))) if closing == mark && n >= count => {
                open = None;
            }
            (None, None) => continue,
            _ => {}
        }
        lines.insert(index);
    }
    lines
}

/// The inline link targets of `markdown` outside code (blocks and `spans`), with their lines.
fn link_targets(markdown: &str) -> Vec<(usize, String)> {
    let code = code_lines(markdown);
    let mut targets = Vec::new();
    for (index, line) in markdown.lines().enumerate() {
        if code.contains(&index) {
            continue;
        }
        // Drop inline code spans: `[a](b)` inside backticks is an example, not a link.
        let prose: String = line
            .split('`')
            .enumerate()
            .filter(|(part, _)| part % 2 == 0)
            .map(|(_, text)| text)
            .collect::<Vec<_>>()
            .join(" ");
        let mut rest = prose.as_str();
        while let Some(at) = rest.find("](") {
            let after = &rest[at + 2..];
            let Some(end) = after.find(')') else { break };
            let target = after[..end].split_whitespace().next().unwrap_or("");
            targets.push((index + 1, target.to_owned()));
            rest = &after[end..];
        }
    }
    targets
}

/// Every relative link of README.md, the other top-level Markdown files and docs/*.md names an
/// existing file, and an anchor names a heading of it.
#[test]
fn relative_links_resolve() {
    let mut files = markdown_in(&repo());
    files.extend(markdown_in(&repo().join("docs")));
    let mut problems = Vec::new();
    for file in &files {
        let markdown = std::fs::read_to_string(file).unwrap();
        let name = file.strip_prefix(repo()).unwrap().display().to_string();
        for (line, target) in link_targets(&markdown) {
            if target.is_empty() || target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            let (path, anchor) = match target.split_once('#') {
                Some((path, anchor)) => (path, Some(anchor)),
                None => (target.as_str(), None),
            };
            let linked = if path.is_empty() {
                file.clone()
            } else {
                file.parent().unwrap().join(path)
            };
            if !linked.exists() {
                problems.push(format!(
                    "{name}:{line}: {target}: no file {}",
                    linked.display()
                ));
                continue;
            }
            let Some(anchor) = anchor else { continue };
            let is_markdown = linked.extension().is_some_and(|ext| ext == "md");
            let headings = anchors(&std::fs::read_to_string(&linked).unwrap_or_default());
            if !is_markdown || !headings.contains(anchor) {
                problems.push(format!(
                    "{name}:{line}: {target}: no heading with the anchor #{anchor} in {path} \
                     (anchors there: {})",
                    {
                        let mut sorted: Vec<_> = headings.into_iter().collect();
                        sorted.sort();
                        sorted.join(", ")
                    }
                ));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "broken links:\n{}",
        problems.join("\n")
    );
}

/// The checker's own parts: a block is found with its line, only the exact info string runs,
/// anchors follow GitHub's rule, and a link inside code is not a link.
#[test]
fn parser_finds_blocks_anchors_and_links() {
    let markdown = "# Title\n\n```sh runnable\necho one\n```\n\n```sh\necho two\n```\n\
                    ## A, b & C (d)\n## A, b & C (d)\n[x](other.md#a-b--c-d) `[y](code.md)`\n\
                    ```text\n[z](in-block.md)\n```\n";
    let blocks = runnable_blocks(markdown);
    assert_eq!(blocks.len(), 1);
    assert_eq!(blocks[0].line, 3);
    assert_eq!(blocks[0].text, "echo one\n");
    let headings = anchors(markdown);
    assert!(headings.contains("title"), "{headings:?}");
    assert!(headings.contains("a-b--c-d"), "{headings:?}");
    assert!(headings.contains("a-b--c-d-1"), "{headings:?}");
    let links = link_targets(markdown);
    assert_eq!(links, vec![(12, "other.md#a-b--c-d".to_owned())]);
}

/// A failing block is reported with its file's line and its output, and what it started in
/// the background is gone afterwards.
#[test]
fn a_failing_block_is_reported_and_its_processes_killed() {
    let temp = tempfile::tempdir().unwrap();
    let file = temp.path().join("broken.md");
    let pid_file = temp.path().join("sleeper.pid");
    std::fs::write(
        &file,
        format!(
            "# Broken\n\n```sh runnable\nsleep 300 & echo $! > {}\ntest \"$PORT_BASE\" -ge 20000\n```\n\n\
             ```sh runnable\necho about to fail\nfalse\necho never\n```\n",
            pid_file.display()
        ),
    )
    .unwrap();
    let failure = run_file(&file).expect_err("the second block fails");
    assert_eq!(failure.block.line, 8);
    assert_eq!(failure.failed_line, Some(10), "the line of `false`");
    assert!(
        failure.output.contains("about to fail"),
        "{}",
        failure.output
    );
    assert!(!failure.output.contains("never"), "{}", failure.output);
    let pid = std::fs::read_to_string(&pid_file).unwrap();
    // Gone, or a zombie its new parent has not reaped yet: either way no longer running.
    let running = std::fs::read_to_string(format!("/proc/{}/stat", pid.trim()))
        .is_ok_and(|stat| !stat.contains(") Z "));
    assert!(
        !running,
        "the block's background sleep {pid} outlived its session"
    );
    let _ = std::fs::remove_dir_all(&failure.kept);
}

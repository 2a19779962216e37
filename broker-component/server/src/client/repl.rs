//! `musqratt shell`'s input loops: a terminal (rustyline: line editing, history, completion of
//! commands and client ids, incoming messages printed above the line being typed) or a pipe
//! (one command per line, for scripts; exit status 1 if any command failed).

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use musqratt_codec::ProtocolVersion;
use rustyline::completion::Completer;
use rustyline::error::ReadlineError;
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::history::DefaultHistory;
use rustyline::validate::Validator;
use rustyline::{Context, Editor, ExternalPrinter, Helper};

use super::command::COMMANDS;
use super::shell::{Outcome, Printer, Shell, Stream};

type Tls = Arc<rustls::ClientConfig>;

/// Run the shell on stdin: interactive on a terminal, scripted otherwise.
/// `tls`: `--cafile` and friends (client/tls.rs); `None`: plain TCP.
pub fn run(host: &str, port: u16, version: ProtocolVersion, tls: Option<Tls>) -> ExitCode {
    if std::io::stdin().is_terminal() {
        match interactive(host, port, version, tls) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: terminal: {e}");
                ExitCode::FAILURE
            }
        }
    } else {
        scripted(host, port, version, tls)
    }
}

fn scripted(host: &str, port: u16, version: ProtocolVersion, tls: Option<Tls>) -> ExitCode {
    let printer: Printer = Arc::new(|stream, line| {
        // One write per line, flushed, so lines from several threads never mix.
        let line = format!("{line}\n");
        let _ = match stream {
            Stream::Out => {
                let mut o = std::io::stdout().lock();
                o.write_all(line.as_bytes()).and_then(|_| o.flush())
            }
            Stream::Err => {
                let mut e = std::io::stderr().lock();
                e.write_all(line.as_bytes()).and_then(|_| e.flush())
            }
        };
    });
    let mut shell = Shell::new(host, port, version, printer, tls);
    let mut failed = false;
    for line in std::io::stdin().lock().lines() {
        let line = match line {
            Ok(l) => l,
            Err(e) => {
                eprintln!("error: cannot read stdin: {e}");
                failed = true;
                break;
            }
        };
        let outcome = shell.run_line(&line);
        // Print what the broker sent in answer before reading the next command.
        shell.sync();
        match outcome {
            Outcome::Ok => {}
            Outcome::Failed => failed = true,
            Outcome::Quit => break,
        }
    }
    shell.sync();
    shell.quit();
    if shell.take_async_failure() || failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// Completes command names, then client ids after `connect` and `disconnect`.
struct ShellHelper {
    ids: Arc<Mutex<Vec<String>>>,
}

impl Completer for ShellHelper {
    type Candidate = String;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _ctx: &Context<'_>,
    ) -> rustyline::Result<(usize, Vec<String>)> {
        let before = &line[..pos];
        let start = before.rfind(char::is_whitespace).map_or(0, |i| i + 1);
        let word = &before[start..];
        let candidates = if start == 0 {
            COMMANDS
                .iter()
                .filter(|c| c.starts_with(word))
                .map(|c| format!("{c} "))
                .collect()
        } else {
            let first = before.split_whitespace().next().unwrap_or("");
            if matches!(first, "connect" | "disconnect") {
                let ids = self.ids.lock().unwrap_or_else(|e| e.into_inner());
                ids.iter()
                    .filter(|id| id.starts_with(word))
                    .cloned()
                    .collect()
            } else {
                Vec::new()
            }
        };
        Ok((start, candidates))
    }
}

impl Hinter for ShellHelper {
    type Hint = String;
}
impl Highlighter for ShellHelper {}
impl Validator for ShellHelper {}
impl Helper for ShellHelper {}

fn history_file() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(|h| PathBuf::from(h).join(".musqratt_history"))
}

fn interactive(
    host: &str,
    port: u16,
    version: ProtocolVersion,
    tls: Option<Tls>,
) -> rustyline::Result<()> {
    let mut rl: Editor<ShellHelper, DefaultHistory> = Editor::new()?;
    let ids = Arc::new(Mutex::new(Vec::new()));
    rl.set_helper(Some(ShellHelper {
        ids: Arc::clone(&ids),
    }));
    let history = history_file();
    if let Some(h) = &history {
        let _ = rl.load_history(h);
    }
    // Every line goes through the external printer: while a line is being edited it prints above
    // it and redraws the prompt with the typed text; otherwise it writes straight through.
    let printer = Mutex::new(rl.create_external_printer()?);
    let printer: Printer = Arc::new(move |_stream, line| {
        let mut p = printer.lock().unwrap_or_else(|e| e.into_inner());
        let _ = p.print(format!("{line}\n"));
    });
    let mut shell = Shell::new(host, port, version, printer, tls);
    eprintln!(
        "musqratt shell: broker {host}:{port}, MQTT {}; `help` lists the commands",
        match version {
            ProtocolVersion::V31 => "3.1",
            ProtocolVersion::V311 => "3.1.1",
            ProtocolVersion::V5 => "5",
        }
    );
    loop {
        let prompt = match shell.client_ids().last() {
            Some(id) => format!("{id}> "),
            None => "musqratt> ".to_string(),
        };
        match rl.readline(&prompt) {
            Ok(line) => {
                if !line.trim().is_empty() {
                    let _ = rl.add_history_entry(line.as_str());
                }
                let outcome = shell.run_line(&line);
                *ids.lock().unwrap_or_else(|e| e.into_inner()) = shell.client_ids();
                if outcome == Outcome::Quit {
                    break;
                }
            }
            // Ctrl-C drops the line being typed, as in other shells.
            Err(ReadlineError::Interrupted) => {}
            Err(ReadlineError::Eof) => break,
            Err(e) => {
                shell.quit();
                return Err(e);
            }
        }
    }
    shell.quit();
    if let Some(h) = &history {
        let _ = rl.save_history(h);
    }
    Ok(())
}

//! Docker's rule for the commands that start a process: their flags end at the first operand.
//!
//! `docker run IMAGE --help` and `docker exec web ls -l` pass every word after IMAGE or
//! CONTAINER to the process. clap would still take a word it knows as its own flag (`--help`,
//! `-i`, `-t`), so before parsing, a `--` is put after that operand.

use std::ffi::OsString;

use clap::Command;

/// The subcommand paths whose flags end at their first operand.
const OPERAND_ENDS_FLAGS: &[&[&str]] = &[
    &["run"],
    &["create"],
    &["exec"],
    &["container", "run"],
    &["container", "create"],
    &["container", "exec"],
];

/// `args` (with the program name first) with `--` inserted after the first operand of `run`,
/// `create` and `exec`, unless the words already hold a `--` before it.
pub fn end_flags_at_operand(cli: &Command, args: Vec<OsString>) -> Vec<OsString> {
    let mut cmd = cli.clone();
    cmd.build();
    let mut path: Vec<String> = Vec::new();
    let mut current = &cmd;
    let mut i = 1;
    // Walk the global flags and subcommand names to the leaf command.
    while i < args.len() {
        let Some(word) = args[i].to_str() else {
            return args;
        };
        if word.starts_with('-') {
            match flag_width(current, word) {
                Some(n) => i += n,
                None => return args,
            }
            continue;
        }
        match current.find_subcommand(word) {
            Some(sub) => {
                path.push(sub.get_name().to_string());
                current = sub;
                i += 1;
            }
            None => break,
        }
    }
    if !OPERAND_ENDS_FLAGS.iter().any(|p| *p == path.as_slice()) {
        return args;
    }
    // Find the first operand of the leaf command.
    while i < args.len() {
        let Some(word) = args[i].to_str() else {
            return args;
        };
        if word == "--" {
            return args;
        }
        if word.starts_with('-') && word != "-" {
            match flag_width(current, word) {
                Some(n) => i += n,
                None => return args,
            }
            continue;
        }
        let mut out = args;
        if i + 1 < out.len() {
            out.insert(i + 1, OsString::from("--"));
        }
        return out;
    }
    args
}

/// How many words the flag `word` takes up in `cmd` (itself, plus its value when the value is
/// the next word); `None` for a flag `cmd` does not know, which clap will report.
fn flag_width(cmd: &Command, word: &str) -> Option<usize> {
    if let Some(long) = word.strip_prefix("--") {
        if long.contains('=') {
            return Some(1);
        }
        let arg = cmd.get_arguments().find(|a| {
            a.get_long() == Some(long) || a.get_all_aliases().is_some_and(|v| v.contains(&long))
        })?;
        return Some(if arg.get_action().takes_values() {
            2
        } else {
            1
        });
    }
    // A cluster of short flags: `-it`, `-e`, `-eK=V`.
    let shorts: Vec<char> = word.chars().skip(1).collect();
    for (n, c) in shorts.iter().enumerate() {
        let arg = cmd.get_arguments().find(|a| a.get_short() == Some(*c))?;
        if arg.get_action().takes_values() {
            // The value is the rest of the word, or the next word.
            return Some(if n + 1 == shorts.len() { 2 } else { 1 });
        }
    }
    Some(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{Arg, ArgAction};

    fn cli() -> Command {
        let flags = |c: Command| {
            c.arg(Arg::new("detach").short('d').action(ArgAction::SetTrue))
                .arg(
                    Arg::new("interactive")
                        .short('i')
                        .action(ArgAction::SetTrue),
                )
                .arg(
                    Arg::new("env")
                        .short('e')
                        .long("env")
                        .action(ArgAction::Append),
                )
                .arg(Arg::new("name").long("name"))
                .arg(Arg::new("operand"))
                .arg(Arg::new("rest").num_args(0..).trailing_var_arg(true))
        };
        Command::new("rimg")
            .arg(Arg::new("root").long("root").global(true))
            .subcommand(flags(Command::new("run")))
            .subcommand(Command::new("container").subcommand(flags(Command::new("exec"))))
            .subcommand(
                Command::new("ps").arg(Arg::new("all").short('a').action(ArgAction::SetTrue)),
            )
    }

    fn words(s: &str) -> Vec<OsString> {
        s.split(' ').map(OsString::from).collect()
    }

    fn joined(v: Vec<OsString>) -> String {
        v.iter()
            .map(|w| w.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn words_after_the_image_belong_to_the_container() {
        let cases = [
            ("rimg run img --help", "rimg run img -- --help"),
            (
                "rimg run -d -e A=1 --name x img ls -l",
                "rimg run -d -e A=1 --name x img -- ls -l",
            ),
            ("rimg run -eA=1 -di img -i", "rimg run -eA=1 -di img -- -i"),
            (
                "rimg --root /s run --env=A img sh",
                "rimg --root /s run --env=A img -- sh",
            ),
            (
                "rimg container exec -i web ls -l",
                "rimg container exec -i web -- ls -l",
            ),
            // Nothing after the operand, a `--` already there, other commands: unchanged.
            ("rimg run img", "rimg run img"),
            ("rimg run -- img -i", "rimg run -- img -i"),
            ("rimg ps -a", "rimg ps -a"),
            // An unknown flag is left for clap to report.
            ("rimg run --bogus img -i", "rimg run --bogus img -i"),
        ];
        for (input, want) in cases {
            assert_eq!(
                joined(end_flags_at_operand(&cli(), words(input))),
                want,
                "{input}"
            );
        }
    }
}

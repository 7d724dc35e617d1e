//! The Dockerfile parser on arbitrary text: never a panic, and every instruction it accepts
//! goes through the per-instruction parsers and word processing the builder uses later.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rimg::builder::dockerfile::{flags_text, parse, parse_arg, parse_copy, parse_from};
use rimg::image::change::{split_instruction, CommandForm, Lexer};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(df) = parse(text) else {
        return;
    };
    let vars = |name: &str| (name.len() % 2 == 0).then(|| format!("v{name}"));
    let lexer = Lexer::with_vars(df.escape, &vars);
    for ins in &df.instructions {
        let _ = flags_text(ins);
        let _ = split_instruction(&ins.text);
        let _ = lexer.words(&ins.args);
        let _ = lexer.word(&ins.args);
        match ins.keyword.as_str() {
            "FROM" => drop(parse_from(ins)),
            "ARG" => drop(parse_arg(ins, df.escape)),
            "COPY" | "ADD" => drop(parse_copy(ins, df.escape)),
            _ => {
                let _ = CommandForm::parse(&ins.args).to_argv(&["/bin/sh".into(), "-c".into()]);
            }
        }
    }
});

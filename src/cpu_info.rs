//! The host CPU as far as it decides inference results and speed.
//!
//! ONNX Runtime picks its int8 kernels by instruction set (AVX2, AVX-512,
//! VNNI, AMX), and those kernels give different logits for the same pair on
//! different sets. Logs, benchmark results and parity tests record this so a
//! score or a timing can be read against the machine that produced it.

use std::fmt;
use std::sync::OnceLock;

/// The `/proc/cpuinfo` flags that select ONNX Runtime's int8 kernels, in the
/// order they are reported.
pub const INT8_FEATURES: &[&str] = &[
    "avx2",
    "avx512f",
    "avx512_vnni",
    "avx512_bf16",
    "avx_vnni",
    "amx_tile",
    "amx_int8",
];

/// Model name, int8-relevant features and usable cores of the host CPU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuInfo {
    /// The `model name` of `/proc/cpuinfo`, or "unknown".
    pub model: String,
    /// Those of [`INT8_FEATURES`] the CPU has.
    pub features: Vec<&'static str>,
    /// Cores this process may use.
    pub cores: usize,
}

impl CpuInfo {
    /// This machine's CPU, read once.
    pub fn host() -> &'static CpuInfo {
        static HOST: OnceLock<CpuInfo> = OnceLock::new();
        HOST.get_or_init(|| {
            let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
            let cores = std::thread::available_parallelism().map_or(1, usize::from);
            CpuInfo::parse(&cpuinfo, cores)
        })
    }

    /// Reads the first processor's model name and flags from `/proc/cpuinfo` text.
    pub fn parse(cpuinfo: &str, cores: usize) -> CpuInfo {
        let field = |name: &str| {
            cpuinfo
                .lines()
                .filter_map(|line| line.split_once(':'))
                .find(|(key, _)| key.trim() == name)
                .map(|(_, value)| value.trim())
        };
        let flags: Vec<&str> = field("flags")
            .unwrap_or_default()
            .split_whitespace()
            .collect();
        CpuInfo {
            model: field("model name").unwrap_or("unknown").to_owned(),
            features: INT8_FEATURES
                .iter()
                .copied()
                .filter(|feature| flags.contains(feature))
                .collect(),
            cores,
        }
    }
}

impl fmt::Display for CpuInfo {
    /// `AMD EPYC (avx2; 2 cores)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let features = if self.features.is_empty() {
            "no avx2".to_owned()
        } else {
            self.features.join(" ")
        };
        write!(f, "{} ({features}; {} cores)", self.model, self.cores)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const AVX512: &str = "processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Platinum 8481C\n\
        flags\t\t: fpu sse avx2 avx512f avx512_vnni amx_tile amx_int8 avx512_bf16\n\n\
        processor\t: 1\nmodel name\t: other\nflags\t\t: fpu\n";

    #[test]
    fn the_first_processor_and_the_int8_features_are_read() {
        let cpu = CpuInfo::parse(AVX512, 4);
        assert_eq!(cpu.model, "Intel(R) Xeon(R) Platinum 8481C");
        assert_eq!(
            cpu.features,
            [
                "avx2",
                "avx512f",
                "avx512_vnni",
                "avx512_bf16",
                "amx_tile",
                "amx_int8"
            ]
        );
        assert_eq!(
            cpu.to_string(),
            "Intel(R) Xeon(R) Platinum 8481C (avx2 avx512f avx512_vnni avx512_bf16 amx_tile amx_int8; 4 cores)"
        );
    }

    #[test]
    fn a_missing_cpuinfo_is_unknown_not_an_error() {
        let cpu = CpuInfo::parse("", 1);
        assert_eq!(cpu.to_string(), "unknown (no avx2; 1 cores)");
    }
}

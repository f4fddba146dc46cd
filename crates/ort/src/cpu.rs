//! What the CPU offers for int8 arithmetic, read from `cpuid` (through the standard library's
//! feature detection; AMX from the kernel's `/proc/cpuinfo` flags): AVX-512 VNNI, AVX-VNNI and AMX-INT8 run ONNX Runtime's u8×s8 integer GEMM
//! (`DynamicQuantizeMatMul`, the `int8` graphs) at full speed without the 16-bit saturation of
//! the plain AVX2 / AVX-512 kernels; AMX-BF16 is what PyTorch's bfloat16 matmuls use.
//!
//! ```
//! let cpu = vidlm_ort::cpu::CpuFeatures::detect();
//! println!("{}", cpu); // e.g. "avx512f avx512vnni amx-int8 amx-bf16"
//! let _prefer = cpu.int8_dot();
//! ```

use std::fmt;

/// The CPU features that decide the integer path.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuFeatures {
    /// AVX2.
    pub avx2: bool,
    /// AVX-512 Foundation.
    pub avx512f: bool,
    /// AVX-512 VNNI (8-bit dot products, 512-bit).
    pub avx512vnni: bool,
    /// AVX-VNNI (the same, 256-bit, VEX-encoded).
    pub avxvnni: bool,
    /// AMX tiles with int8 products.
    pub amx_int8: bool,
    /// AMX tiles with bfloat16 products.
    pub amx_bf16: bool,
}

impl CpuFeatures {
    /// The features of the CPU this process runs on (all false off x86-64).
    pub fn detect() -> CpuFeatures {
        #[cfg(target_arch = "x86_64")]
        {
            CpuFeatures {
                avx2: std::arch::is_x86_feature_detected!("avx2"),
                avx512f: std::arch::is_x86_feature_detected!("avx512f"),
                avx512vnni: std::arch::is_x86_feature_detected!("avx512vnni"),
                avxvnni: std::arch::is_x86_feature_detected!("avxvnni"),
                // AMX detection is not stable in `is_x86_feature_detected!` yet; Linux lists the
                // AMX flags only where the kernel enables the tile state, which is what counts.
                amx_int8: proc_cpuinfo_flag("amx_int8"),
                amx_bf16: proc_cpuinfo_flag("amx_bf16"),
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            CpuFeatures::default()
        }
    }

    /// Whether int8 dot products run natively (VNNI or AMX): where the `int8` graphs
    /// (int8 activations × int8 weights) are the fast path.
    pub fn int8_dot(&self) -> bool {
        self.avx512vnni || self.avxvnni || self.amx_int8
    }
}

/// Whether `/proc/cpuinfo`'s first `flags` line names `flag` (false where there is none).
fn proc_cpuinfo_flag(flag: &str) -> bool {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("flags"))
                .map(|l| l.split_whitespace().any(|x| x == flag))
        })
        .unwrap_or(false)
}

impl fmt::Display for CpuFeatures {
    /// The features present, space-separated (`none` if none).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names = [
            (self.avx2, "avx2"),
            (self.avx512f, "avx512f"),
            (self.avx512vnni, "avx512vnni"),
            (self.avxvnni, "avxvnni"),
            (self.amx_int8, "amx-int8"),
            (self.amx_bf16, "amx-bf16"),
        ];
        let have: Vec<&str> = names.iter().filter(|(on, _)| *on).map(|(_, n)| *n).collect();
        f.write_str(if have.is_empty() { "none" } else { "" })?;
        f.write_str(&have.join(" "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detection_agrees_with_proc_cpuinfo() {
        let cpu = CpuFeatures::detect();
        assert!(!cpu.int8_dot() || cpu.avx512vnni || cpu.avxvnni || cpu.amx_int8);
        // Linux names the same flags in /proc/cpuinfo (the kernel also hides features it
        // does not enable, e.g. AMX without its XSAVE state, so both must agree).
        let Ok(info) = std::fs::read_to_string("/proc/cpuinfo") else { return };
        let Some(flags) = info.lines().find(|l| l.starts_with("flags")) else { return };
        let has = |f: &str| flags.split_whitespace().any(|x| x == f);
        assert_eq!(cpu.avx2, has("avx2"));
        assert_eq!(cpu.avx512vnni, has("avx512_vnni"));
        assert_eq!(cpu.amx_int8, has("amx_int8"));
        assert_eq!(cpu.amx_bf16, has("amx_bf16"));
        let none = CpuFeatures::default();
        assert_eq!(none.to_string(), "none");
        assert!(!none.int8_dot());
    }
}

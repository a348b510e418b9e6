//! Building the QEMU command line and the kernel command line from a VM
//! description. Pure: no files are touched here.

use std::ffi::OsString;
use std::path::PathBuf;

use cgstorm_proto::cmdline::Token;
use cgstorm_proto::contract::{DEVICES_PARAM, PORT_NAME};

use crate::accel::Accel;
use crate::error::HostError;
use crate::spec::{expected_devices, Pmem, VmSpec, MEMMAP_HEADROOM_MIB};

/// Host files a run uses, made by the caller in a temporary directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunFiles {
    /// The initramfs.
    pub initrd: PathBuf,
    /// Unix socket the host listens on; QEMU connects the agent port to it.
    pub agent_socket: PathBuf,
    /// One sparse raw file per scratch disk.
    pub disks: Vec<PathBuf>,
    /// The NVDIMM backing file, for [`Pmem::Nvdimm`].
    pub nvdimm: Option<PathBuf>,
}

/// The kernel parameters every cgstorm guest gets, whatever boots it:
/// unthrottled `/dev/kmsg`, sysrq, the token, the pmem carve-out, the devices
/// the agent waits for, then the user's.
pub fn cgstorm_params(spec: &VmSpec, token: &Token) -> Vec<String> {
    let mut p = vec![
        "printk.devkmsg=on".to_string(),
        "sysrq_always_enabled".to_string(),
    ];
    p.push(token.kernel_param());
    if let Some(Pmem::Memmap {
        size_mib,
        offset_mib,
    }) = spec.pmem
    {
        p.push(format!("memmap={size_mib}M!{offset_mib}M"));
    }
    let devs = expected_devices(spec);
    if !devs.is_empty() {
        p.push(format!("{DEVICES_PARAM}={}", devs.join(",")));
    }
    p.extend(spec.append.iter().cloned());
    p
}

/// The kernel command line for a direct boot: console on the first serial
/// port, reboot at once on panic (QEMU's `-no-reboot` then exits), then
/// [`cgstorm_params`].
pub fn kernel_cmdline(spec: &VmSpec, token: &Token) -> String {
    let mut p = vec!["console=ttyS0".to_string(), "panic=-1".to_string()];
    p.extend(cgstorm_params(spec, token));
    p.join(" ")
}

/// Checks the spec for mistakes QEMU or the kernel would report late.
pub fn validate(spec: &VmSpec, files: &RunFiles) -> Result<(), HostError> {
    if spec.cpus == 0 || spec.memory_mib < 128 {
        return Err(HostError::Config(format!(
            "need at least 1 cpu and 128 MiB, got {} cpus and {} MiB",
            spec.cpus, spec.memory_mib
        )));
    }
    if files.disks.len() != spec.disks_mib.len() {
        return Err(HostError::Config("one backing file per disk needed".into()));
    }
    match spec.pmem {
        Some(Pmem::Memmap {
            size_mib,
            offset_mib,
        }) => {
            let need = offset_mib + size_mib + MEMMAP_HEADROOM_MIB;
            if spec.memory_mib < need || size_mib == 0 {
                return Err(HostError::Config(format!(
                    "memmap={size_mib}M!{offset_mib}M needs -m of at least {need} MiB, got {}; \
                     raise memory or lower the offset",
                    spec.memory_mib
                )));
            }
        }
        Some(Pmem::Nvdimm { .. }) if files.nvdimm.is_none() => {
            return Err(HostError::Config("nvdimm needs a backing file".into()))
        }
        _ => {}
    }
    Ok(())
}

/// The full QEMU argument list (without the program name).
pub fn qemu_args(
    spec: &VmSpec,
    accel: Accel,
    token: &Token,
    files: &RunFiles,
) -> Result<Vec<OsString>, HostError> {
    validate(spec, files)?;
    let mut a: Vec<OsString> = Vec::new();
    let mut push = |items: &[&str]| a.extend(items.iter().map(OsString::from));
    push(&[
        "-nographic",
        "-no-reboot",
        "-nic",
        "none",
        "-no-user-config",
    ]);
    push(accel.qemu_args());
    let memory = match spec.pmem {
        Some(Pmem::Nvdimm { size_mib }) => {
            push(&["-machine", &format!("{},nvdimm=on", accel.machine())]);
            format!(
                "{}M,slots=2,maxmem={}M",
                spec.memory_mib,
                spec.memory_mib + size_mib
            )
        }
        _ => {
            push(&["-machine", accel.machine()]);
            format!("{}M", spec.memory_mib)
        }
    };
    push(&["-m", &memory, "-smp", &spec.cpus.to_string()]);
    a.push("-kernel".into());
    a.push(spec.kernel.clone().into());
    a.push("-initrd".into());
    a.push(files.initrd.clone().into());
    a.push("-append".into());
    a.push(kernel_cmdline(spec, token).into());

    a.extend(device_args(spec, files));
    a.extend(spec.extra_args.iter().map(OsString::from));
    Ok(a)
}

/// The devices every cgstorm guest gets, whatever boots it: the agent port
/// (virtio-serial, one named port, wired to the unix socket the host listens
/// on; QEMU connects as a client at startup), the virtio-blk scratch disks and
/// the NVDIMM backend and device.
pub fn device_args(spec: &VmSpec, files: &RunFiles) -> Vec<OsString> {
    let mut a: Vec<OsString> = Vec::new();
    a.push("-chardev".into());
    let mut chardev = OsString::from("socket,id=cgagent,path=");
    chardev.push(&files.agent_socket);
    a.push(chardev);
    for s in ["-device", "virtio-serial-pci,id=cgvser", "-device"] {
        a.push(s.into());
    }
    a.push(format!("virtserialport,bus=cgvser.0,chardev=cgagent,name={PORT_NAME}").into());
    for (i, disk) in files.disks.iter().enumerate() {
        a.push("-drive".into());
        let mut d = OsString::from("file=");
        d.push(disk);
        d.push(format!(
            ",format=raw,if=none,id=cgdisk{i},cache=unsafe,discard=unmap"
        ));
        a.push(d);
        a.push("-device".into());
        a.push(format!("virtio-blk-pci,drive=cgdisk{i},serial=cgstorm{i}").into());
    }
    if let (Some(Pmem::Nvdimm { size_mib }), Some(file)) = (spec.pmem, &files.nvdimm) {
        a.push("-object".into());
        let mut o = OsString::from("memory-backend-file,id=cgnvmem0,share=on,mem-path=");
        o.push(file);
        o.push(format!(",size={size_mib}M"));
        a.push(o);
        a.push("-device".into());
        a.push("nvdimm,id=cgnvdimm0,memdev=cgnvmem0".into());
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token() -> Token {
        Token::parse("00112233445566778899aabbccddeeff").unwrap()
    }

    fn files(disks: usize) -> RunFiles {
        RunFiles {
            initrd: "/t/initrd".into(),
            agent_socket: "/t/agent.sock".into(),
            disks: (0..disks)
                .map(|i| PathBuf::from(format!("/t/disk{i}.img")))
                .collect(),
            nvdimm: None,
        }
    }

    fn joined(args: &[OsString]) -> String {
        args.iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn full_command_line() {
        let spec = VmSpec {
            kernel: "/k/bzImage".into(),
            memory_mib: 2048,
            disks_mib: vec![64, 64],
            pmem: Some(Pmem::Memmap {
                size_mib: 256,
                offset_mib: 1024,
            }),
            append: vec!["quiet".into()],
            ..VmSpec::default()
        };
        let args = qemu_args(&spec, Accel::Tcg, &token(), &files(2)).unwrap();
        let s = joined(&args);
        assert!(s.starts_with("-nographic -no-reboot -nic none -no-user-config -accel tcg -cpu max,la57=off -machine q35 -m 2048M -smp 2"), "{s}");
        assert!(s.contains("-kernel /k/bzImage -initrd /t/initrd"), "{s}");
        assert!(
            s.contains("-chardev socket,id=cgagent,path=/t/agent.sock"),
            "{s}"
        );
        assert!(
            s.contains(
                "-device virtserialport,bus=cgvser.0,chardev=cgagent,name=org.cgstorm.agent"
            ),
            "{s}"
        );
        assert!(
            s.contains("-drive file=/t/disk1.img,format=raw,if=none,id=cgdisk1,cache=unsafe"),
            "{s}"
        );
        assert!(
            s.contains("-device virtio-blk-pci,drive=cgdisk1,serial=cgstorm1"),
            "{s}"
        );
        let append = &args[args.iter().position(|a| a == "-append").unwrap() + 1];
        assert_eq!(
            append.to_str().unwrap(),
            "console=ttyS0 panic=-1 printk.devkmsg=on sysrq_always_enabled \
             cgstorm.token=00112233445566778899aabbccddeeff memmap=256M!1024M \
             cgstorm.devices=vda,vdb,pmem0 quiet"
        );
    }

    #[test]
    fn kvm_and_nvdimm() {
        let spec = VmSpec {
            kernel: "/k".into(),
            pmem: Some(Pmem::Nvdimm { size_mib: 512 }),
            ..VmSpec::default()
        };
        let mut f = files(0);
        assert!(qemu_args(&spec, Accel::Kvm, &token(), &f).is_err());
        f.nvdimm = Some("/t/nvdimm.img".into());
        let s = joined(&qemu_args(&spec, Accel::Kvm, &token(), &f).unwrap());
        assert!(
            s.contains("-accel kvm -cpu host -machine pc,nvdimm=on -m 2048M,slots=2,maxmem=2560M"),
            "{s}"
        );
        assert!(
            s.contains("memory-backend-file,id=cgnvmem0,share=on,mem-path=/t/nvdimm.img,size=512M"),
            "{s}"
        );
        assert!(
            s.contains("-device nvdimm,id=cgnvdimm0,memdev=cgnvmem0"),
            "{s}"
        );
        assert!(!s.contains("memmap="));
    }

    #[test]
    fn memmap_needs_enough_ram() {
        let spec = VmSpec {
            memory_mib: 1024,
            pmem: Some(Pmem::Memmap {
                size_mib: 256,
                offset_mib: 1024,
            }),
            ..VmSpec::default()
        };
        let err = qemu_args(&spec, Accel::Tcg, &token(), &files(0)).unwrap_err();
        assert!(err.to_string().contains("at least 1536 MiB"), "{err}");
    }
}

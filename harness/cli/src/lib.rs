//! cgstorm's engine, under the `cgstorm` commands (src/main.rs and its
//! modules, one a command): booting or restoring a VM and running a program
//! in it against the model ([`run`]), the campaign loop that fuzzing and
//! soaking share ([`campaign`]), the finding directory ([`findings`]), the
//! programs that ran before a finding and their replay ([`history`]), the
//! program loader and stored runs ([`programs`]), the kernel's code by
//! subsystem as coverage sees it ([`kernel_code`]), the VM and kernel
//! options ([`vm_args`], [`kernel_args`]; the machine they give is
//! `cgstorm_vm::machine`'s), the built-in corpus ([`data`]) and the
//! HTML/XML escaper ([`markup`]). It depends on nothing of the commands.

pub mod campaign;
pub mod data;
pub mod findings;
pub mod history;
pub mod kernel_args;
pub mod kernel_code;
pub mod markup;
pub mod programs;
pub mod run;
pub mod vm_args;
pub mod workdirs;

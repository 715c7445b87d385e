//! `cargo run --release -p kernel-sim --example layout [x86_64|x86_64-5level|i386|arm64-39|arm64-48] [out.svg]`
//!
//! Prints the kernel address-space layout of that configuration, one region a line (name,
//! start-end, size), then where a booted machine's own kernel objects would sit in it (for
//! x86-64: its RAM in the direct map, its `struct page` array in vmemmap, a few frames
//! through `virt_to_page` and back; for i386, a 2 GiB machine's lowmem, highmem and the
//! boot message's lines), and writes the layout's SVG (`/tmp/kernel-layout.svg`
//! unless given).

use kernel_sim::{Arch, Config, KernelLayout, Machine};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let name = args.first().map_or("x86_64", String::as_str);
    let Some(arch) = Arch::from_name(name) else {
        eprintln!("layout: unknown configuration '{name}' (x86_64, x86_64-5level, i386, arm64-39, arm64-48)");
        std::process::exit(2);
    };
    let svg_path = args.get(1).map_or("/tmp/kernel-layout.svg", String::as_str);
    let layout = KernelLayout::new(arch);
    let mut text = String::new();
    layout.write_text(&mut text).expect("formatting");
    println!("{name}: kernel address-space layout\n{text}");
    if matches!(arch, Arch::X86_64) {
        let m = match Machine::boot(&Config { phys_bytes: 256 << 20, ..Config::DEFAULT }) {
            Ok(m) => m,
            Err(e) => {
                eprintln!("layout: boot: {}", std::io::Error::from_raw_os_error(e.0));
                std::process::exit(1);
            }
        };
        let mut objects = String::new();
        m.write_kernel_objects(&mut objects).expect("formatting");
        println!("a booted machine with 256 MiB of RAM, its objects at their kernel addresses:\n{objects}");
    }
    let mut svg = String::new();
    layout.write_svg(&mut svg).expect("formatting");
    if let Err(e) = std::fs::write(svg_path, svg) {
        eprintln!("layout: {svg_path}: {e}");
        std::process::exit(1);
    }
    println!("SVG written to {svg_path}");
}

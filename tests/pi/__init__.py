"""edgetag installed and run on an emulated Raspberry Pi userland (qemu-user): `make pi-test`.

Not part of `make test`: it needs root, qemu-user-static and several minutes per architecture.
See docs/raspberry-pi.md.
"""

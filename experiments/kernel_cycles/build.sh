#!/bin/bash
# Build CMSIS-NN's int8 kernels and driver.c for a Cortex-M4 (bare metal) and for the host (output cross-check).
#   CMSIS_NN=/path/to/CMSIS-NN BUILD=/tmp/edgebench-kernel-cycles ./build.sh
# Needs Debian's gcc-arm-none-eabi and libnewlib-arm-none-eabi, and a CMSIS-NN checkout
# (github.com/ARM-software/CMSIS-NN; results were made at commit 99f736a63036613032f9b70de36b493bcd7802d4).
set -e
HERE="$(cd "$(dirname "$0")" && pwd)"
NN="${CMSIS_NN:?set CMSIS_NN to a CMSIS-NN checkout}"
BUILD="${BUILD:-/tmp/edgebench-kernel-cycles}"
CFLAGS_M4="-mcpu=cortex-m4 -mthumb -mfloat-abi=hard -mfpu=fpv4-sp-d16 -O2 -ffunction-sections -fdata-sections -DARM_MATH_DSP -I$NN/Include -Wall -Wno-unused"
mkdir -p "$BUILD/build/m4" "$BUILD/build/host"
SRCS=$(find "$NN/Source" -name '*.c' ! -path '*/Bindings/*' ! -name '*_f16*' ! -name '*_f32*' ! -name '*_flt*' | sort)
objs=()
for s in $SRCS "$HERE/driver.c"; do
  o="$BUILD/build/m4/$(echo "$s" | tr '/' '_').o"
  arm-none-eabi-gcc $CFLAGS_M4 -c "$s" -o "$o"
  objs+=("$o")
done
# libc only for memcpy/memset (newlib's v7-M memcpy); no startup files
arm-none-eabi-gcc $CFLAGS_M4 -nostartfiles -T "$HERE/link.ld" -Wl,--gc-sections -Wl,-Map="$BUILD/build/m4/image.map" \
   "${objs[@]}" -lc -lgcc -o "$BUILD/build/m4/image.elf"
arm-none-eabi-size "$BUILD/build/m4/image.elf"
# host reference (CMSIS-NN's portable C path, no DSP) for the checksum comparison
gcc -O1 -DHOST_BUILD -I"$NN/Include" $SRCS "$HERE/driver.c" -o "$BUILD/build/host/driver_host" -lm
"$BUILD/build/host/driver_host" > "$BUILD/build/host/checksums.txt"

#!/usr/bin/env python3
"""Run the Cortex-M4 CMSIS-NN image in Unicorn and count executed instructions per kernel call.

Attribution: the driver writes a kernel id to 0x40000000 before each call and 0 after; a memory-write
hook switches the current region, a per-instruction code hook counts into it (slop: 1-2 instructions).
Each instruction is classified once (capstone) and fed through a simple Cortex-M4 cycle model
(TRM r0p1 table 3-1 timings; see CYCLE_MODEL below)."""
import json, struct, subprocess, sys, os, collections
from unicorn import Uc, UC_ARCH_ARM, UC_MODE_THUMB, UC_MODE_MCLASS, UC_HOOK_CODE, UC_HOOK_MEM_WRITE
from unicorn.arm_const import UC_ARM_REG_SP, UC_ARM_REG_LR, UC_CPU_ARM_CORTEX_M4
import capstone as cs

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.environ.get('BUILD', '/tmp/edgebench-kernel-cycles')  # where build.sh wrote build/m4 and build/host
OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, 'kernel_counts.json')
ELF = os.path.join(ROOT, 'build/m4/image.elf')
MARKER = 0x40000000

# ---------------- kernel metadata (must match src/driver.c) ----------------
conv3 = dict(H=16, W=16, Cin=16, Cout=16, K=3, pad=1, stride=1)
pw = dict(H=16, W=16, Cin=32, Cout=32, K=1, pad=0, stride=1)
dw = dict(H=16, W=16, C=32, K=3, pad=1, stride=1, ch_mult=1)
KERNELS = {
    1: dict(name='arm_convolve_s8', op='conv2d 3x3', shape=conv3, macs=16*16*16*9*16),
    2: dict(name='arm_convolve_wrapper_s8', op='conv2d 3x3 (wrapper dispatch)', shape=conv3, macs=16*16*16*9*16),
    3: dict(name='arm_convolve_1x1_s8_fast', op='conv2d 1x1 pointwise', shape=pw, macs=16*16*32*32),
    4: dict(name='arm_convolve_wrapper_s8', op='conv2d 1x1 pointwise (wrapper dispatch)', shape=pw, macs=16*16*32*32),
    5: dict(name='arm_depthwise_conv_wrapper_s8', op='depthwise 3x3 (wrapper -> arm_depthwise_conv_3x3_s8)', shape=dw, macs=16*16*32*9),
    6: dict(name='arm_depthwise_conv_s8_opt', op='depthwise 3x3 (generic optimized)', shape=dw, macs=16*16*32*9),
    7: dict(name='arm_fully_connected_s8', op='fully connected', shape=dict(batch=1, in_features=256, out_features=128), macs=256*128),
    8: dict(name='arm_elementwise_add_s8', op='elementwise add', shape=dict(elements=4096), elements=4096),
    9: dict(name='arm_avgpool_s8', op='avgpool 2x2 s2', shape=dict(H=16, W=16, C=32, K=2, stride=2, out='8x8x32'), elements=8*8*32, input_elements=16*16*32),
    10: dict(name='arm_max_pool_s8', op='maxpool 2x2 s2', shape=dict(H=16, W=16, C=32, K=2, stride=2, out='8x8x32'), elements=8*8*32, input_elements=16*16*32),
    11: dict(name='arm_softmax_s8', op='softmax', shape=dict(rows=1, row_size=10), elements=10),
    12: dict(name='arm_softmax_s8', op='softmax', shape=dict(rows=16, row_size=128), elements=16*128),
    13: dict(name='arm_convolve_s8', op='conv2d 3x3 (variant)', shape=dict(H=8, W=8, Cin=32, Cout=32, K=3, pad=1, stride=1), macs=8*8*32*9*32),
    14: dict(name='arm_convolve_1x1_s8_fast', op='conv2d 1x1 pointwise (variant)', shape=dict(H=8, W=8, Cin=64, Cout=64, K=1, pad=0, stride=1), macs=8*8*64*64),
    15: dict(name='arm_fully_connected_s8', op='fully connected (variant)', shape=dict(batch=1, in_features=512, out_features=64), macs=512*64),
    16: dict(name='arm_depthwise_conv_wrapper_s8', op='depthwise 3x3 (variant, -> 3x3 kernel)', shape=dict(H=8, W=8, C=64, K=3, pad=1, stride=1, ch_mult=1), macs=8*8*64*9),
}
for k, v in KERNELS.items():   # number of output elements (per-output requantisation cost)
    sh = v['shape']
    if 'Cout' in sh: v['outputs'] = sh['H'] * sh['W'] * sh['Cout']
    elif 'C' in sh and 'ch_mult' in sh: v['outputs'] = sh['H'] * sh['W'] * sh['C']
    elif 'out_features' in sh: v['outputs'] = sh['out_features']

# ---------------- ELF loading (PT_LOAD segments, symbols via nm) ----------------
def load_elf(path):
    d = open(path, 'rb').read()
    assert d[:4] == b'\x7fELF' and d[4] == 1
    e_phoff, = struct.unpack_from('<I', d, 28)
    e_phentsize, e_phnum = struct.unpack_from('<HH', d, 42)
    segs = []
    for i in range(e_phnum):
        p_type, p_off, p_vaddr, p_paddr, p_filesz, p_memsz, p_flags, p_align = struct.unpack_from('<8I', d, e_phoff + i * e_phentsize)
        if p_type == 1 and p_memsz:
            segs.append((p_vaddr, d[p_off:p_off + p_filesz], p_memsz))
    return segs

def symbols(path):
    out = subprocess.run(['arm-none-eabi-nm', '-S', '--defined-only', '-n', path], capture_output=True, text=True).stdout
    syms = {}
    funcs = []
    for line in out.splitlines():
        f = line.split()
        if len(f) == 4:
            a, sz, t, n = int(f[0], 16), int(f[1], 16), f[2], f[3]
            syms[n] = a
            if t in 'tT':
                funcs.append((a & ~1, a + sz, n))
        elif len(f) == 3:
            syms[f[2]] = int(f[0], 16)
    return syms, funcs

# ---------------- instruction classes and Cortex-M4 cycle model ----------------
MUL = {'mul', 'mla', 'mls', 'smull', 'umull', 'smlal', 'umlal', 'umaal', 'smmul', 'smmulr', 'smmla', 'smmlar', 'smmls', 'smmlsr',
       'smlad', 'smladx', 'smlsd', 'smlsdx', 'smlald', 'smlaldx', 'smlsld', 'smlsldx', 'smuad', 'smuadx', 'smusd', 'smusdx',
       'smlabb', 'smlabt', 'smlatb', 'smlatt', 'smlawb', 'smlawt', 'smulbb', 'smulbt', 'smultb', 'smultt', 'smulwb', 'smulwt',
       'smlalbb', 'smlalbt', 'smlaltb', 'smlaltt', 'usad8', 'usada8'}
DIV = {'sdiv', 'udiv'}
SIMD = {'sxtb16', 'uxtb16', 'sxtab16', 'uxtab16', 'sadd16', 'ssub16', 'sadd8', 'ssub8', 'uadd8', 'usub8', 'uadd16', 'usub16',
        'qadd', 'qsub', 'qdadd', 'qdsub', 'qadd16', 'qsub16', 'qadd8', 'qsub8', 'ssat', 'usat', 'ssat16', 'usat16', 'pkhbt', 'pkhtb',
        'sel', 'shadd16', 'shsub16', 'qasx', 'qsax', 'sasx', 'ssax'}
COND = ('eq', 'ne', 'cs', 'hs', 'cc', 'lo', 'mi', 'pl', 'vs', 'vc', 'hi', 'ls', 'ge', 'lt', 'gt', 'le', 'al')

def base_mnemonic(m):
    m = m.split('.')[0]
    return m

def classify(insn):
    m = base_mnemonic(insn.mnemonic)
    ops = insn.op_str
    writes_pc = False
    if m in ('pop', 'push') or m.startswith('ldm') or m.startswith('stm'):
        n = ops[ops.find('{') + 1:ops.find('}')]
        cnt = 0
        for part in n.split(','):
            part = part.strip()
            if '-' in part:
                a, b = part.split('-'); cnt += int(b.strip()[1:]) - int(a.strip()[1:]) + 1
            elif part:
                cnt += 1
        writes_pc = 'pc' in n
        return ('load_multi' if (m == 'pop' or m.startswith('ldm')) else 'store_multi', cnt, writes_pc)
    if m.startswith('ldr') or m.startswith('ldrex'):
        if m.startswith('ldrd'):
            return ('load_double', 2, False)
        return ('load', 1, ops.startswith('pc'))
    if m.startswith('str'):
        if m.startswith('strd'):
            return ('store_double', 2, False)
        return ('store', 1, False)
    if m in MUL or m.rstrip('s') in MUL:
        return ('mul_mac', 0, False)
    if m in DIV:
        return ('div', 0, False)
    if m in SIMD:
        return ('dsp_simd_sat', 0, False)
    if m in ('it', 'ite', 'itt', 'itee', 'itte', 'ittt', 'itet', 'iteee', 'iteet', 'itete', 'itett', 'ittee', 'ittet', 'ittte', 'itttt') or m.startswith('it'):
        if m.startswith('it') and all(c in 'te' for c in m[2:]):
            return ('it', 0, False)
    if m in ('b', 'bl', 'blx', 'bx', 'cbz', 'cbnz', 'tbb', 'tbh') or (m.startswith('b') and m[1:] in COND):
        return ('branch', 0, True)
    if m.startswith('v'):
        return ('fp', 0, False)
    # ALU writing pc (e.g. mov pc, lr / add pc, ...)
    if ops.startswith('pc,'):
        return ('branch', 0, True)
    return ('alu', 0, False)

# Cortex-M4 TRM (DDI0439) table 3-1, simplified:
#  ALU/SIMD/saturate/IT: 1 (IT assumed not folded: 1)   MUL/MLA/SMLAD/SMULL/SMLAL...: 1
#  LDR/STR single: 2, but each one directly following another single LDR/STR pipelines -> 1  (N consecutive = N+1)
#  LDRD/STRD: 3   LDM/STM/PUSH/POP of N regs: 1+N   SDIV/UDIV: 2..12 (we charge 7)
#  Branch not taken: 1; taken branch (or any PC write): 1+P with P = pipeline refill; we use P=2 (range 1..3).
#  Zero-wait-state memory assumed (real flash at high clock adds wait states, mitigated by the ART/prefetch).
CYCLE_MODEL = 'Cortex-M4 TRM table 3-1 simplified: ALU/DSP/MAC 1, LDR/STR 2 (1 when pipelined behind another LDR/STR), LDRD/STRD 3, LDM/STM 1+N, DIV 7, branch 1 (+P=2 if taken), zero wait states'
P_REFILL = 2

def main():
    syms, funcs = symbols(ELF)
    uc = Uc(UC_ARCH_ARM, UC_MODE_THUMB | UC_MODE_MCLASS)
    uc.ctl_set_cpu_model(UC_CPU_ARM_CORTEX_M4)
    uc.mem_map(0x08000000, 1 << 20)
    uc.mem_map(0x20000000, 1 << 20)
    uc.mem_map(MARKER, 0x1000)
    for va, data, memsz in load_elf(ELF):
        uc.mem_write(va, data)
    md = cs.Cs(cs.CS_ARCH_ARM, cs.CS_MODE_THUMB | cs.CS_MODE_MCLASS)

    info = {}          # addr -> (cls, base_cycles, is_ls_single, size, mnemonic)
    region = [0]
    stats = collections.defaultdict(lambda: dict(insns=0, cycles=0, taken=0, classes=collections.Counter(), pcs=collections.Counter()))
    state = dict(prev_addr=None, prev_size=0, prev_ls=False, prev_region=0)

    def decode(addr):
        code = bytes(uc.mem_read(addr, 4))
        ins = next(md.disasm(code, addr, 1), None)
        if ins is None:
            raise RuntimeError('cannot decode at %x' % addr)
        cls, n, _ = classify(ins)
        ls = cls in ('load', 'store')
        base = {'alu': 1, 'dsp_simd_sat': 1, 'mul_mac': 1, 'it': 1, 'branch': 1, 'fp': 1, 'div': 7,
                'load': 2, 'store': 2, 'load_double': 3, 'store_double': 3,
                'load_multi': 1 + n, 'store_multi': 1 + n}[cls]
        t = (cls, base, ls, ins.size, base_mnemonic(ins.mnemonic))
        info[addr] = t
        return t

    def on_code(uc_, addr, size, _):
        t = info.get(addr) or decode(addr)
        r = region[0]
        s = stats[r]
        pa = state['prev_addr']
        if pa is not None and addr != pa + state['prev_size']:
            sp = stats[state['prev_region']]
            sp['taken'] += 1
            sp['cycles'] += P_REFILL
        cyc = t[1]
        if t[2] and state['prev_ls']:
            cyc = 1
        s['insns'] += 1
        s['cycles'] += cyc
        s['classes'][t[0]] += 1
        s['pcs'][addr] += 1
        state['prev_addr'] = addr; state['prev_size'] = size; state['prev_ls'] = t[2]; state['prev_region'] = r

    def on_write(uc_, access, addr, size, value, _):
        if addr == MARKER:
            region[0] = value

    uc.hook_add(UC_HOOK_CODE, on_code)
    uc.hook_add(UC_HOOK_MEM_WRITE, on_write, begin=MARKER, end=MARKER + 3)
    uc.reg_write(UC_ARM_REG_SP, 0x20100000 - 64)
    halt = syms['halt'] & ~1
    uc.reg_write(UC_ARM_REG_LR, syms['halt'] | 1)
    uc.emu_start(syms['_start'] | 1, halt, count=500_000_000)

    # results cross-check against the host build
    res = struct.unpack('<64I', bytes(uc.mem_read(syms['result'], 256)))
    host = {}
    hp = os.path.join(ROOT, 'build/host/checksums.txt')
    if os.path.exists(hp):
        for line in open(hp):
            k, st, c = line.split(); host[int(k)] = (int(st), int(c, 16))

    def func_of(a):
        for lo, hi, n in funcs:
            if lo <= a < hi:
                return n
        return '?'

    def gcc_version():
        return subprocess.run(['arm-none-eabi-gcc', '--version'], capture_output=True, text=True).stdout.splitlines()[0]

    commit = os.environ.get('CMSIS_NN_COMMIT') or subprocess.run(
        ['git', '-C', os.environ.get('CMSIS_NN', '.'), 'rev-parse', 'HEAD'], capture_output=True, text=True).stdout.strip()
    out = dict(
        cmsis_nn_commit=commit,
        compiler=gcc_version(),
        cflags='-mcpu=cortex-m4 -mthumb -mfloat-abi=hard -mfpu=fpv4-sp-d16 -O2 -ffunction-sections -fdata-sections -DARM_MATH_DSP; link -nostartfiles --gc-sections, memcpy/memset from full newlib (-lc)',
        emulator='unicorn %s, UC_MODE_THUMB|UC_MODE_MCLASS, cpu model UC_CPU_ARM_CORTEX_M4' % __import__('unicorn').__version__,
        cycle_model=CYCLE_MODEL,
        notes='instructions counted per executed instruction (conditional-in-IT-block instructions that are skipped still count, as they take an issue slot). Marker slop: +-2 instructions per call.',
        kernels=[],
    )
    for k in sorted(KERNELS):
        meta = dict(KERNELS[k])
        s = stats[k]
        n = s['insns']
        status, ck = res[2 * k], res[2 * k + 1]
        h = host.get(k)
        entry = dict(id=k, **meta)
        entry.update(instructions=n, est_cycles=s['cycles'], taken_branches=s['taken'],
                     instr_classes=dict(s['classes'].most_common()),
                     status=status, output_checksum='%08x' % ck,
                     matches_host_reference=(h is not None and h == (status, ck)))
        denom_key = 'macs' if 'macs' in meta else 'elements'
        entry['instructions_per_' + ('mac' if denom_key == 'macs' else 'element')] = round(n / meta[denom_key], 4)
        entry['est_cycles_per_' + ('mac' if denom_key == 'macs' else 'element')] = round(s['cycles'] / meta[denom_key], 4)
        fc = collections.Counter()
        for a, c in s['pcs'].items():
            fc[func_of(a)] += c
        entry['instructions_by_function'] = dict(fc.most_common(6))
        out['kernels'].append(entry)
    out['outside_kernels_instructions'] = stats[0]['insns']
    # two-point fits  instr ~= a*MACs + b*outputs  (pairs have equal MACs, different output counts)
    byid = {e['id']: e for e in out['kernels']}
    fits = {}
    for name, (i, j) in {'arm_convolve_s8 3x3': (1, 13), 'arm_convolve_1x1_s8_fast': (3, 14), 'arm_fully_connected_s8': (7, 15)}.items():
        ei, ej = byid[i], byid[j]
        f = {}
        for key in ('instructions', 'est_cycles'):
            b = (ei[key] - ej[key]) / (ei['outputs'] - ej['outputs'])
            a = (ej[key] - b * ej['outputs']) / ej['macs']
            f[key] = dict(per_mac=round(a, 4), per_output=round(b, 2))
        f['from_ids'] = [i, j]
        fits[name] = f
    out['linear_fits_instr_eq_a_MACs_plus_b_outputs'] = fits
    json.dump(out, open(OUT, 'w'), indent=1)
    print('->', OUT)

    print('%-3s %-30s %-44s %10s %10s %9s %9s %s' % ('id', 'kernel', 'op', 'MACs/elem', 'instr', 'instr/u', 'cyc/u', 'ok'))
    for e in out['kernels']:
        u = e.get('macs', e.get('elements'))
        ipu = e.get('instructions_per_mac', e.get('instructions_per_element'))
        cpu = e.get('est_cycles_per_mac', e.get('est_cycles_per_element'))
        print('%-3d %-30s %-44s %10d %10d %9.3f %9.3f %s' % (e['id'], e['name'], e['op'][:44], u, e['instructions'], ipu, cpu, e['matches_host_reference']))
    bad = [e['id'] for e in out['kernels'] if not e['matches_host_reference'] or e['status'] != 0]
    if bad:
        print('WARNING: mismatch/bad status for kernels', bad)
        sys.exit(1)

if __name__ == '__main__':
    main()

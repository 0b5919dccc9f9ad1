/*
 * intquant runtime: where constant data lives and how kernels read it.
 *
 * Every constant array of a generated model (weights, biases, multipliers, shifts, tables) is
 * defined with IQ_FLASH, and every kernel reads such an array only through IQ_LOAD_*:
 *
 *   IQ_LOAD_U8(p) IQ_LOAD_S8(p) IQ_LOAD_U16(p) IQ_LOAD_S16(p) IQ_LOAD_S32(p) IQ_LOAD_U32(p)
 *   IQ_LOAD_S64(p)
 *   IQ_LOAD_T(type, p)   the same chosen by element type (int8_t, ..., uint32_t), for the
 *                        conv / fully_connected template whose types are macros
 *   IQ_LOAD_OBJ(type, p, tmp)  a pointer through which a constant struct at p is read: on AVR
 *                        `tmp` (a local of that type) filled by memcpy_P, elsewhere p itself
 *                        (no copy: the per-channel iq_rqw_t records of iq_requant.h)
 *
 * On cores with one address space (Cortex-M, RISC-V, PowerPC, the host) these are plain
 * `const` objects and plain dereferences. On AVR (Harvard: flash and RAM are separate address
 * spaces, and avr-gcc copies every initialised `static const` into RAM at start-up) IQ_FLASH is
 * avr-libc's PROGMEM and the loads are pgm_read_* (LPM): the constants stay in program memory
 * and 8 KB of RAM hold only the arena and the stack. A kernel that dereferences a flash array
 * directly reads RAM at that address instead: the bit-exact AVR tests catch it.
 *
 * pgm_read_* reach the first 64 KB of flash: generated models with more constants than that
 * stop with an #error on AVR (and the AVR build checks where the linker put them).
 * Parameter structs and shape arrays stay ordinary `static const` objects (RAM on AVR).
 */
#ifndef IQ_TARGET_H
#define IQ_TARGET_H

#include <stdint.h>

#if defined(__AVR__)
#include <avr/pgmspace.h>
#define IQ_FLASH PROGMEM
#define IQ_FLASH_LIMIT 65536L /* bytes pgm_read_* can reach */
#define IQ_LOAD_U8(p) ((uint8_t)pgm_read_byte(p))
#define IQ_LOAD_S8(p) ((int8_t)pgm_read_byte(p))
#define IQ_LOAD_U16(p) ((uint16_t)pgm_read_word(p))
#define IQ_LOAD_S16(p) ((int16_t)pgm_read_word(p))
#define IQ_LOAD_S32(p) ((int32_t)pgm_read_dword(p))
#define IQ_LOAD_U32(p) ((uint32_t)pgm_read_dword(p))
/* Two 32-bit reads, low word first (AVR is little-endian). */
static inline int64_t iq_load_s64_flash(const int64_t* p)
{
    const uint32_t* w = (const uint32_t*)(const void*)p;
    return (int64_t)(((uint64_t)pgm_read_dword(w + 1) << 32) | pgm_read_dword(w));
}
#define IQ_LOAD_S64(p) iq_load_s64_flash(p)
#define IQ_LOAD_OBJ(type, p, tmp) ((const type*)memcpy_P(&(tmp), (p), sizeof(type)))
#else
#define IQ_FLASH
#define IQ_LOAD_U8(p) (*(const uint8_t*)(p))
#define IQ_LOAD_S8(p) (*(const int8_t*)(p))
#define IQ_LOAD_U16(p) (*(const uint16_t*)(p))
#define IQ_LOAD_S16(p) (*(const int16_t*)(p))
#define IQ_LOAD_S32(p) (*(const int32_t*)(p))
#define IQ_LOAD_U32(p) (*(const uint32_t*)(p))
#define IQ_LOAD_S64(p) (*(const int64_t*)(p))
#define IQ_LOAD_OBJ(type, p, tmp) ((void)&(tmp), (const type*)(p))
#endif

#define IQ_LOAD_uint8_t IQ_LOAD_U8
#define IQ_LOAD_int8_t IQ_LOAD_S8
#define IQ_LOAD_uint16_t IQ_LOAD_U16
#define IQ_LOAD_int16_t IQ_LOAD_S16
#define IQ_LOAD_int32_t IQ_LOAD_S32
#define IQ_LOAD_uint32_t IQ_LOAD_U32
#define IQ_LOAD_int64_t IQ_LOAD_S64
#define IQ_LOAD_T_(type, p) IQ_LOAD_##type(p)
#define IQ_LOAD_T(type, p) IQ_LOAD_T_(type, p) /* `type` may be a macro (IQ_TW) */

#endif /* IQ_TARGET_H */

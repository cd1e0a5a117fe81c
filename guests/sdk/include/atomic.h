/*
 * Atomics, barriers and a spinlock for data shared between vCPUs or with the
 * hypervisor (shared_info, grant entries).  Every read-modify-write of a word
 * someone else may update uses a `lock`-prefixed instruction.
 */
#ifndef SDK_ATOMIC_H
#define SDK_ATOMIC_H

#include <stdint.h>
#include <stdbool.h>

#ifdef __x86_64__
#define _SFX_LONG "q"
#else
#define _SFX_LONG "l"
#endif

#define READ_ONCE(x)      (*(const volatile __typeof__(x) *)&(x))
#define WRITE_ONCE(x, v)  (*(volatile __typeof__(x) *)&(x) = (v))

/* Full barrier (orders stores before later loads too). */
static inline void mb(void)
{
    asm volatile("mfence" ::: "memory");
}

/* x86 keeps loads in order; the compiler must too. */
static inline void rmb(void)
{
    asm volatile("lfence" ::: "memory");
}

static inline unsigned long xchg_ulong(volatile unsigned long *p, unsigned long v)
{
    asm volatile("xchg %0, %1" : "+r"(v), "+m"(*p) :: "memory");
    return v;
}

static inline uint32_t xchg_u32(volatile uint32_t *p, uint32_t v)
{
    asm volatile("xchgl %0, %1" : "+r"(v), "+m"(*p) :: "memory");
    return v;
}

static inline uint8_t xchg_u8(volatile uint8_t *p, uint8_t v)
{
    asm volatile("xchgb %0, %1" : "+q"(v), "+m"(*p) :: "memory");
    return v;
}

/* Returns the value found; the swap happened when it equals `old`. */
static inline uint16_t cmpxchg_u16(volatile uint16_t *p, uint16_t old, uint16_t new)
{
    asm volatile("lock cmpxchgw %2, %1" : "+a"(old), "+m"(*p) : "r"(new) : "memory");
    return old;
}

static inline uint32_t cmpxchg_u32(volatile uint32_t *p, uint32_t old, uint32_t new)
{
    asm volatile("lock cmpxchgl %2, %1" : "+a"(old), "+m"(*p) : "r"(new) : "memory");
    return old;
}

/* Adds v and returns the previous value. */
static inline uint32_t atomic_xadd_u32(volatile uint32_t *p, uint32_t v)
{
    asm volatile("lock xaddl %0, %1" : "+r"(v), "+m"(*p) :: "memory");
    return v;
}

static inline unsigned long atomic_xadd_ulong(volatile unsigned long *p, unsigned long v)
{
    asm volatile("lock xadd" _SFX_LONG " %0, %1" : "+r"(v), "+m"(*p) :: "memory");
    return v;
}

static inline void atomic_inc_u32(volatile uint32_t *p)
{
    asm volatile("lock incl %0" : "+m"(*p) :: "memory");
}

/* Bit operations on one word; bit < bits per long. */
static inline bool test_and_set_bit(unsigned int bit, volatile unsigned long *w)
{
    bool old;
    asm volatile("lock bts" _SFX_LONG " %2, %0" : "+m"(*w), "=@ccc"(old)
                 : "r"((unsigned long)bit) : "memory");
    return old;
}

static inline bool test_and_clear_bit(unsigned int bit, volatile unsigned long *w)
{
    bool old;
    asm volatile("lock btr" _SFX_LONG " %2, %0" : "+m"(*w), "=@ccc"(old)
                 : "r"((unsigned long)bit) : "memory");
    return old;
}

static inline void set_bit(unsigned int bit, volatile unsigned long *w)
{
    (void)test_and_set_bit(bit, w);
}

static inline void clear_bit(unsigned int bit, volatile unsigned long *w)
{
    (void)test_and_clear_bit(bit, w);
}

static inline bool test_bit(unsigned int bit, const volatile unsigned long *w)
{
    return (*w >> bit) & 1;
}

static inline unsigned int lowest_bit(unsigned long v)   /* v != 0 */
{
    return (unsigned int)__builtin_ctzl(v);
}

/* A test-and-set spinlock (x86 stores are releases). */
typedef struct {
    volatile uint32_t locked;
} spinlock_t;
#define SPINLOCK_INIT { 0 }

static inline void spin_lock(spinlock_t *l)
{
    while (xchg_u32(&l->locked, 1))
        while (l->locked)
            asm volatile("pause" ::: "memory");
}

static inline bool spin_trylock(spinlock_t *l)
{
    return xchg_u32(&l->locked, 1) == 0;
}

static inline void spin_unlock(spinlock_t *l)
{
    asm volatile("" ::: "memory");
    l->locked = 0;
}

/* Interrupt flag. */
static inline void local_irq_enable(void)
{
    asm volatile("sti" ::: "memory");
}

static inline void local_irq_disable(void)
{
    asm volatile("cli" ::: "memory");
}

static inline bool irqs_enabled(void)
{
    unsigned long f;
    asm volatile("pushf; pop %0" : "=r"(f) :: "memory");
    return f & (1u << 9);
}

/* Enables interrupts and halts in one step (STI's shadow covers the HLT), so
 * an event that arrives after the caller's last check still wakes us. */
static inline void safe_halt(void)
{
    asm volatile("sti; hlt" ::: "memory");
}

#endif

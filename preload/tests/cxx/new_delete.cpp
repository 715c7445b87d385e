// C++'s operator new and delete, every replaceable form: `new_delete CASE`, exit status 0
// when the case holds. The expectations are libstdc++'s on glibc's malloc, so each case is
// run on both; EXPECT_NEW_FROM names the object whose operator new must be the one called.
#include <dlfcn.h>
#include <malloc.h>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>
#include <thread>
#include <vector>

#define CHECK(c)                                                             \
    do {                                                                     \
        if (!(c)) {                                                          \
            std::fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__,      \
                         __LINE__, #c);                                      \
            std::exit(1);                                                    \
        }                                                                    \
    } while (0)

// A request no allocator can serve (4 EiB), kept opaque to the compiler.
static volatile std::size_t huge = std::size_t(1) << 62;

static const char *object_of(const void *f) {
    Dl_info info;
    CHECK(dladdr(f, &info) != 0 && info.dli_fname != nullptr);
    return info.dli_fname;
}

static bool ends_with(const char *s, const char *tail) {
    std::size_t n = std::strlen(s), m = std::strlen(tail);
    return n >= m && std::strcmp(s + n - m, tail) == 0;
}

// Every form resolves to the object EXPECT_NEW_FROM names (libstdc++ when it is unset).
static void interposed() {
    const char *want = std::getenv("EXPECT_NEW_FROM");
    if (want == nullptr) want = "libstdc++.so.6";
    const void *forms[] = {
        reinterpret_cast<const void *>(static_cast<void *(*)(std::size_t)>(&::operator new)),
        reinterpret_cast<const void *>(static_cast<void *(*)(std::size_t)>(&::operator new[])),
        reinterpret_cast<const void *>(
            static_cast<void *(*)(std::size_t, const std::nothrow_t &) noexcept>(&::operator new)),
        reinterpret_cast<const void *>(
            static_cast<void *(*)(std::size_t, std::align_val_t)>(&::operator new)),
        reinterpret_cast<const void *>(static_cast<void (*)(void *) noexcept>(&::operator delete)),
        reinterpret_cast<const void *>(
            static_cast<void (*)(void *, std::size_t) noexcept>(&::operator delete)),
        reinterpret_cast<const void *>(
            static_cast<void (*)(void *, std::align_val_t) noexcept>(&::operator delete[])),
    };
    for (const void *f : forms) {
        const char *from = object_of(f);
        if (!ends_with(from, want)) {
            std::fprintf(stderr, "an operator resolved to %s, not %s\n", from, want);
            std::exit(1);
        }
    }
}

struct alignas(128) Wide {
    char bytes[200];
};

// Blocks of every form: usable, of the size asked, aligned as asked, freed by the matching
// delete (plain, sized, aligned, sized and aligned), from the heap malloc serves.
static void blocks() {
    std::vector<char *> kept;
    for (std::size_t n = 0; n < 70000; n = n * 3 + 1) {
        char *p = new char[n];
        CHECK(malloc_usable_size(p) >= n);
        std::memset(p, 0x5a, n);
        kept.push_back(p);
    }
    for (char *p : kept) delete[] p;

    int *one = new int(7);
    CHECK(*one == 7 && reinterpret_cast<std::uintptr_t>(one) % 16 == 0);
    ::operator delete(one, sizeof(int));

    Wide *w = new Wide;
    CHECK(reinterpret_cast<std::uintptr_t>(w) % 128 == 0);
    std::memset(w->bytes, 1, sizeof w->bytes);
    delete w;
    Wide *ws = new Wide[5];
    CHECK(reinterpret_cast<std::uintptr_t>(ws) % 128 == 0);
    delete[] ws;
    for (std::size_t align = 1; align <= 65536; align *= 2) {
        void *p = ::operator new(100, std::align_val_t(align));
        CHECK(reinterpret_cast<std::uintptr_t>(p) % align == 0);
        std::memset(p, 2, 100);
        ::operator delete(p, 100, std::align_val_t(align));
        p = ::operator new[](3000, std::align_val_t(align), std::nothrow);
        CHECK(p != nullptr && reinterpret_cast<std::uintptr_t>(p) % align == 0);
        ::operator delete[](p, std::align_val_t(align), std::nothrow);
    }
    // A block from new freed by free, and one from malloc freed by delete: one heap.
    void *p = ::operator new(48);
    std::free(p);
    p = std::malloc(48);
    ::operator delete(p);
    ::operator delete(nullptr);
    ::operator delete[](nullptr, std::align_val_t(64));

    // Strings and vectors on several threads, each freeing what another made.
    std::vector<std::string *> handed(4000);
    std::thread maker([&] {
        for (std::size_t i = 0; i < handed.size(); i++)
            handed[i] = new std::string(i % 300 + 20, 'x');
    });
    maker.join();
    std::thread taker([&] {
        for (std::string *s : handed) {
            CHECK(s->size() >= 20 && (*s)[0] == 'x');
            delete s;
        }
    });
    taker.join();
}

// Failure is C++'s: the nothrow forms return null, the others throw std::bad_alloc, and
// the program's catch gets it (no frame between the runtime and the program may stop it).
static void failure() {
    CHECK(::operator new(huge, std::nothrow) == nullptr);
    CHECK(::operator new[](huge, std::nothrow) == nullptr);
    CHECK(::operator new(huge, std::align_val_t(64), std::nothrow) == nullptr);
    CHECK(::operator new[](huge, std::align_val_t(4096), std::nothrow) == nullptr);
    int thrown = 0;
    try {
        (void)::operator new(huge);
    } catch (const std::bad_alloc &) {
        thrown++;
    }
    try {
        (void)::operator new[](huge);
    } catch (const std::bad_alloc &) {
        thrown++;
    }
    try {
        (void)::operator new(huge, std::align_val_t(256));
    } catch (const std::bad_alloc &) {
        thrown++;
    }
    try {
        (void)::operator new[](huge, std::align_val_t(32));
    } catch (const std::bad_alloc &) {
        thrown++;
    }
    CHECK(thrown == 4);
    // Allocation still works afterwards.
    char *p = new char[100];
    delete[] p;
}

static int handler_calls;

static void counting_handler() {
    if (++handler_calls == 3) std::set_new_handler(nullptr);
}

// The new-handler runs on every failure until it gives up, as the C++ runtime runs it.
static void handler() {
    std::set_new_handler(counting_handler);
    bool thrown = false;
    try {
        (void)::operator new(huge);
    } catch (const std::bad_alloc &) {
        thrown = true;
    }
    CHECK(thrown && handler_calls == 3);
    handler_calls = 0;
    std::set_new_handler(counting_handler);
    CHECK(::operator new(huge, std::nothrow) == nullptr && handler_calls == 3);
    // The handler is not called when memory is there.
    handler_calls = 0;
    std::set_new_handler(counting_handler);
    delete new int(1);
    CHECK(handler_calls == 0);
    std::set_new_handler(nullptr);
}

int main(int argc, char **argv) {
    const char *c = argc > 1 ? argv[1] : "";
    if (std::strcmp(c, "interposed") == 0) interposed();
    else if (std::strcmp(c, "blocks") == 0) blocks();
    else if (std::strcmp(c, "failure") == 0) failure();
    else if (std::strcmp(c, "handler") == 0) handler();
    else {
        std::fprintf(stderr, "usage: new_delete interposed|blocks|failure|handler\n");
        return 2;
    }
    return 0;
}

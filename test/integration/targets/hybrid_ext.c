// A tiny C extension module for the hybrid-stack tests (native-hybrid-*, attach-native-hybrid-*).
// The driver compiles it at run time against the headers of the interpreter under test
// (cc -shared -fPIC -g -O1). alloc(n, keep) mallocs n blocks of HYBRID_SIZE bytes at the line
// marked EXT_ALLOC, keeps the first `keep` of them for good and frees the others at once, so a
// capture holds exactly n mallocs, n - keep frees and keep leaks of that size. The function has
// external linkage and its own name so the symbolised frame is `hybrid_alloc`.
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdlib.h>

#define HYBRID_SIZE 54321
#define HYBRID_MAX_KEPT 4096

static void* g_kept[HYBRID_MAX_KEPT];
static int g_kept_count;

__attribute__((noinline)) PyObject* hybrid_alloc(PyObject* self, PyObject* args) {
    (void)self;
    int n, keep;
    if (!PyArg_ParseTuple(args, "ii", &n, &keep)) return NULL;
    if (n < 0 || keep < 0 || keep > n || g_kept_count + keep > HYBRID_MAX_KEPT) {
        PyErr_SetString(PyExc_ValueError, "bad counts");
        return NULL;
    }
    for (int i = 0; i < n; ++i) {
        void* p = malloc(HYBRID_SIZE); /* EXT_ALLOC */
        if (p == NULL) return PyErr_NoMemory();
        ((volatile char*)p)[0] = (char)i;  // a used block: the malloc/free pair cannot be elided
        if (i < keep)
            g_kept[g_kept_count++] = p;
        else
            free(p);
    }
    Py_RETURN_NONE;
}

static PyObject* hybrid_size(PyObject* self, PyObject* unused) {
    (void)self, (void)unused;
    return PyLong_FromLong(HYBRID_SIZE);
}

static PyMethodDef k_methods[] = {
    {"alloc", hybrid_alloc, METH_VARARGS, "alloc(n, keep): n mallocs, the first keep kept"},
    {"size", hybrid_size, METH_NOARGS, "size of each block"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef k_module = {PyModuleDef_HEAD_INIT, "hybrid_ext", NULL, -1, k_methods,
                                      NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit_hybrid_ext(void) { return PyModule_Create(&k_module); }

# Declarations that Cython adds to src/limpet/proxy/fast.py when it compiles it as
# limpet.proxy._cfast (an "augmenting" .pxd; the pure-Python reference never reads it).
# FastPath becomes an extension type: its fields (the same names as its __slots__) are C struct
# members, the flags C ints and the status a C int, read and written without a dict or a
# descriptor lookup; the objects it holds are the ones the reference holds.

cdef class ReferencePath:
    cdef public object down

cdef class FastPath:
    cdef public object backend_id, down, head, pick, runtime, state, upstream
    cdef public bint keep_alive, resp_chunked, resp_close, until_close
    cdef public int status

    cpdef clear(self)

# Declarations that Cython adds to src/limpet/proxy/http1.py when it compiles it as
# limpet.proxy._chttp1 (an "augmenting" .pxd; the pure-Python reference never reads it).
# Exchange and Deadline become extension types: their fields (the same names as their
# __slots__, all Python objects, so both builds hold the same values) are read and written as C
# struct members from their own methods instead of through a type lookup and a descriptor,
# and the methods called per request from inside the class are cpdef (a C call, no bound method).

cdef class Deadline:
    cdef public object callback, handle, loop
    cdef public double deadline

cdef class Exchange:
    cdef public object body_buffer, body_buffered, body_chunked, body_done, body_sent, ctx, down
    cdef public object early_data, expect_continue, failed, filter, headers, keep_alive, lnames
    cdef public object last_chunk
    cdef public object method, pick, replayable, resp_chunked, resp_close, retried_stale, runtime
    cdef public object state
    cdef public object status, until_close, upgrade, upstream, url, version

    cpdef step(self, event)
    cpdef ready(self)
    cpdef write_down(self, data)
    cpdef finish(self, conn, reuse)

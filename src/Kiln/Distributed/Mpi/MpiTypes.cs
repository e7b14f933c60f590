namespace Kiln.Distributed.Mpi;

/// <summary>The datatype and reduction Kiln adds to MPI for bfloat16: a 2-byte contiguous type and its sum operation.</summary>
internal sealed unsafe class MpiTypes
{
    private nint _bfloat16;
    private nint _bfloat16Sum;

    private MpiTypes(nint bfloat16, nint bfloat16Sum)
    {
        _bfloat16 = bfloat16;
        _bfloat16Sum = bfloat16Sum;
    }

    public nint BFloat16 => _bfloat16;
    public nint BFloat16Sum => _bfloat16Sum;

    public static MpiTypes Create(MpiLibrary library)
    {
        nint type, op;
        Expect(library, library.TypeContiguous(2, library.Byte, &type), "Type_contiguous");
        Expect(library, library.TypeCommit(&type), "Type_commit");
        Expect(library, library.OpCreate(Mpi.BFloat16Sum.FunctionPointer, 1, &op), "Op_create");
        return new MpiTypes(type, op);
    }

    public void Free(MpiLibrary library)
    {
        fixed (nint* op = &_bfloat16Sum)
            Expect(library, library.OpFree(op), "Op_free");
        fixed (nint* type = &_bfloat16)
            Expect(library, library.TypeFree(type), "Type_free");
    }

    private static void Expect(MpiLibrary library, int code, string operation)
    {
        if (code != 0)
            throw new CommunicatorException($"MPI_{operation} failed: {library.Describe(code)}");
    }
}

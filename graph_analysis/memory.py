"""Inference and training memory estimates from an ONNX graph (weights, live activations, runtime).

Everything here is *estimated* from the graph: tensor sizes are counted (dims x data type, after
binding the inputs and inferring shapes); how the runtime and the training framework use them is a
model whose constants are named keyword arguments, derived from measurements (see docs/memory.md, and
``benchmarks/calibrate_runtime.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import Enum
from pathlib import Path

import onnx

from graph_analysis._arena import planned_buffers, simulate_arena
from graph_analysis._gc import gc_paused
from graph_analysis._graph import NodeTable
from graph_analysis._liveness import (
    ALIAS_OPS,
    MAX_SPANS,
    GraphLiveness,
    LiveTensor,
    TensorSizes,
    analyze_liveness,
    outer_references,
    subgraphs_of,
)
from graph_analysis._weights import (
    ModelWeights,
    Reading,
    enclosing_scopes,
    read_weights,
    weights_and_skeleton,
)
from graph_analysis.bindings import Bindings
from graph_analysis.dtypes import DataType, is_floating
from graph_analysis.errors import ModelsizeError
from graph_analysis.report import Role
from graph_analysis.shapes import (
    MAIN_GRAPH,
    InferredShapes,
    TensorShape,
    infer_shapes,
    iter_graphs,
    node_label,
)

__all__ = [
    "EXPORTED_GRAPH",
    "ExecutedGraph",
    "InferenceEstimate",
    "LiveTensor",
    "Loss",
    "MemoryEstimate",
    "Optimizer",
    "OrtCpuModel",
    "StepPhase",
    "TrainingEstimate",
    "TrainingItem",
    "TrainingPrecision",
    "estimate_memory",
    "memory_to_dict",
]

MiB = 1 << 20

#: ``InferenceEstimate.activations_graph`` when the activations come from the graph as stored.
EXPORTED_GRAPH = "exported"


@dataclass(frozen=True)
class ExecutedGraph:
    """The graph onnxruntime runs for a model: its own optimized graph, saved by a runtime child
    (``graph_analysis.runtime.optimized``), to read the activations' liveness from.

    Attributes:
        model: the optimized graph's skeleton (fused ops, NCHWc layout ops and reorders).
        stored: its stored tensors (the one reading of the saved file).
        nchwc_block_size: MLAS's NCHWc block size on the machine that made it (None: unknown).
        description: what the graph is, for the output (``onnxruntime 1.32.0 ORT_ENABLE_ALL
            optimized graph, NCHWc block 8``).
        session_code_bytes: measured: the file-backed pages (onnxruntime's code) the child's
            session creation mapped, None where it could not tell; they stand for
            ``OrtCpuModel.session_code_bytes``.
    """

    model: onnx.ModelProto
    stored: ModelWeights
    nchwc_block_size: int | None
    description: str
    session_code_bytes: int | None = None


class Optimizer(str, Enum):
    """Optimizers whose per-parameter state the training estimate knows."""

    SGD = "sgd"
    MOMENTUM = "momentum"
    ADAM = "adam"
    ADAMW = "adamw"


class TrainingPrecision(str, Enum):
    """Training precision: all fp32, all fp16/bf16, or mixed (16-bit compute, fp32 master)."""

    FP32 = "fp32"
    FP16 = "fp16"
    BF16 = "bf16"
    MIXED = "mixed"


class Loss(str, Enum):
    """The loss a training step applies to the model's first floating-point output.

    ``auto`` picks what a user of that kind of model trains with, from the graph's first output:
    cross-entropy for logits (an LM head over an embedding's vocabulary, or a ``[batch, classes]``
    output of a Gemm/MatMul), mean-square error otherwise (regression outputs, feature maps,
    hidden states).
    """

    AUTO = "auto"
    CROSS_ENTROPY = "cross_entropy"
    MSE = "mse"
    SUM = "sum"


#: What each loss holds, in multiples of the output's bytes (PyTorch 2.13 CPU, measured on a
#: 512 x 32000 fp32 output with a fixed mmap threshold). Cross-entropy: ``log_softmax``'s output
#: (saved), the gradient ``nll_loss`` hands back and the logits' gradient: 3 at the start of
#: backward. Mean-square error: the target and the output's gradient (the squared difference is
#: freed within forward): 2. Sum: the output's gradient only: 1 (a stand-in for custom losses with
#: small intermediates; ``loss_output_factor`` sets any other multiple).
LOSS_OUTPUT_FACTORS: Mapping[Loss, float] = {
    Loss.CROSS_ENTROPY: 3.0,
    Loss.MSE: 2.0,
    Loss.SUM: 1.0,
}


class StepPhase(str, Enum):
    """The moments of a training step whose held memory the estimate adds up.

    ``first_backward``: forward and backward of the first step (no optimizer state yet: Adam
    creates it in the first ``step()``, after backward has freed the activations).
    ``backward``: forward and backward from the second step on (the state is held throughout).
    ``optimizer_step``: the optimizer's update (activations freed, gradients and state held).
    """

    FIRST_BACKWARD = "first_backward"
    BACKWARD = "backward"
    OPTIMIZER_STEP = "optimizer_step"


_ALL_PHASES = (StepPhase.FIRST_BACKWARD, StepPhase.BACKWARD, StepPhase.OPTIMIZER_STEP)
_BACKWARD_PHASES = (StepPhase.FIRST_BACKWARD, StepPhase.BACKWARD)

#: fp32 buffers the optimizer keeps per trainable parameter.
OPTIMIZER_STATE_BUFFERS: Mapping[Optimizer, int] = {
    Optimizer.SGD: 0,
    Optimizer.MOMENTUM: 1,
    Optimizer.ADAM: 2,
    Optimizer.ADAMW: 2,
}

# Ops that keep (some of) their activation inputs for backward, and ops that keep their output.
# Chosen after PyTorch's autograd formulas (tools/autograd/derivatives.yaml): linear maps and
# products need their inputs, pointwise nonlinearities whose derivative is a function of the result
# keep the result; additions, shape ops, reductions to a mean and concatenations keep nothing.
SAVES_INPUTS = frozenset(
    {
        "MatMul",
        "Gemm",
        "Conv",
        "ConvTranspose",
        "Mul",
        "Div",
        "Pow",
        "Gelu",
        "Erf",
        "Log",
        "LayerNormalization",
        "BatchNormalization",
        "InstanceNormalization",
        "GroupNormalization",
        "MaxPool",
        "LeakyRelu",
        "Clip",
        "HardSigmoid",
        "HardSwish",
        "Elu",
        "Selu",
        "Softplus",
        "PRelu",
        "Where",
        "Gather",
        "GatherElements",
        "Einsum",
        "ReduceMax",
        "ReduceMin",
        "ReduceL2",
        "Sin",
        "Cos",
        "Abs",
        "Sign",
        "Min",
        "Max",
        "SimplifiedLayerNormalization",
        "SkipLayerNormalization",
        "FastGelu",
        "BiasGelu",
        "Attention",
        "MultiHeadAttention",
        "LSTM",
    }
)
SAVES_OUTPUTS = frozenset(
    {"Relu", "Sigmoid", "Tanh", "Softmax", "LogSoftmax", "Exp", "Sqrt", "Reciprocal", "LSTM"}
)
#: Ops whose backward keeps int64 indices shaped like their first output (max_pool2d_with_indices).
SAVES_INDICES = frozenset({"MaxPool"})


@dataclass(frozen=True)
class OrtCpuModel:
    """The onnxruntime CPU memory model: how a session's peak resident growth follows the graph.

    ``peak = session_fixed - session_code + C + subgraph_session x subgraphs + session_node x N
    + session_initializer x I + max(load_factor x W_inline + P_ext + largest P_ext tensor + U,
    resident_factor x W + H + U + prepack_factor x (P_big - P_rel)
    + arena_factor x A + F - R + run_fixed)`` with ``C`` the code pages a session maps
    (measured with the optimized graph, else ``session_code``), ``N`` and ``I`` the nodes and
    initializers the session holds, ``W`` the weight bytes (``W_inline`` those inside the .onnx file),
    ``H = heap_kept_factor x W_heap + reorder_copies_factor x C_max + fusion_kept_factor x
    W_bn`` what glibc's heap keeps after session creation (``W_heap`` the inline weights whose
    load-time copies glibc serves from its heap: those under ``heap_tensor_max_bytes``, and
    those under the threshold earlier weights raised, ``heap_threshold_rises``; ``C_max`` the
    largest NCHWc-reordered convolution weight, ``W_bn`` the weights of the ``Conv`` nodes
    onnxruntime fuses a following ``BatchNormalization`` into), ``R`` the part of the first
    run's arena that fits in ``H`` (regions up to ``heap_reuse_region_max_bytes``, or up to the
    raised threshold and the largest hole),
    ``P_big`` the inline GEMM weights at or over ``heap_tensor_max_bytes`` (``P_rel`` the
    largest, when released), ``P_ext`` the external weights GEMM kernels
    pre-pack at creation (external data is memory-mapped: nothing else of it is read then), ``U`` the
    float copies of 16-bit weights, ``A`` the activation liveness peak, ``L`` the largest
    activation and ``F`` what the arena holds beyond ``A`` (``arena_simulation``). The first
    term of the max is session creation (the file's bytes, the parsed protobuf and the
    initializer tensors coexist), the second one inference. Constants derived
    from measurements with onnxruntime 1.32 on Linux x86-64 (glibc malloc), default session
    options, one intra-op thread (benchmarks/calibrate_runtime.py; the table is in
    docs/memory.md).

    Attributes:
        session_fixed_bytes: growth from creating a session for a weightless model (9.16 MiB
            re-derived by ``calibrate_runtime.py`` on 2026-12-01, 9.4 by the first wave, 5.07 by
            one earlier run): ``session_code_bytes`` of it are file-backed pages of onnxruntime's
            code, whose count depends on the page cache and the kernel more than on the model
            (docs/memory.md).
        run_fixed_bytes: growth from the first ``run`` beyond weights and activations (1.0 MiB
            re-derived on weightless chains on 2026-12-01: thread-pool work buffers, kernel
            scratch, the execution frame, the kernels' code pages; the 7 MiB measured before
            included ``numpy.random``, which the measuring child loaded after its baseline).
        load_factor: creation peak per weight byte (2.0 measured, with or without pre-packing).
        resident_factor: weight bytes resident after creation per weight byte (1.0 measured).
        heap_kept_factor: resident bytes glibc keeps per byte of small weight tensors after
            session creation. The file's bytes, the parsed protobuf and the weight copies made
            while the session is created are freed into glibc's heap, which does not return them
            to the system: resident memory after creation stays at the creation peak. Blocks
            above glibc's mmap threshold are unmapped when freed instead, so only small tensors
            count (1.0 measured: see docs/memory.md).
        fusion_kept_factor: resident bytes glibc keeps per byte of ``Conv`` weights that
            onnxruntime fuses a following ``BatchNormalization`` into (``ConvBNFusion``, at every
            optimization level from basic): the fusion writes new weights while the session is
            created, and the copies it frees stay in the heap. Measured: disabling the fusion
            takes 4.9 MiB (1.5 x its 3.2 MiB of fused weights) off the orientation classifier's
            session, 1.1 x on the layout detector; a synthetic conv stack holds 1.4 x the fused
            weights more with a ``BatchNormalization`` after each conv than without (0.8-1.8 over
            three sizes, above and below glibc's mmap threshold); a least-squares fit of the
            real sessions gives 1.36 (docs/memory.md).
        heap_reuse_region_max_bytes: the first run's arena regions up to this size are served
            from what session creation left in glibc's heap (pages already resident: the process
            does not grow for them), up to ``H``. Measured (``mallinfo2``): the 1, 2 and 4 MiB
            regions of the small YOLO detectors' first runs come from the freed heap in 5 of 6
            children (the 8 MiB one is mapped), so they grow by 0.7-4.6 MiB for 5-14 MiB of
            activations; larger regions are mapped or extend the heap.
        heap_tensor_max_bytes: the tensor size under which a weight's original (the copy made
            while the graph is built, freed at the end of session creation) stays in glibc's
            heap. glibc's mmap threshold starts at 128 KiB and rises (to 32 MiB at most) as
            mapped blocks are freed: traced, the file's read block (4 MiB, or the file's size)
            raises it first (``benchmarks/trace_session.py``); 4 MiB fits the sessions of 15
            real models best with ``reorder_copies_factor`` (docs/memory.md).
        prepack_factor: extra resident bytes per byte of inline GEMM weights (``MatMul``,
            ``Gemm``, ...) at or over ``heap_tensor_max_bytes`` but the largest: the packed copy
            beside an original that stays in the heap (two 8 MiB MatMul weights: 1.5 x W). Under
            the threshold the original is in ``heap_kept_factor``'s term.
        reorder_copies_factor: resident bytes per byte of the largest convolution weight the
            NCHWc transformer reorders: it makes four copies of each weight it reorders and frees
            three of them together (traced: the unpacked initializer, the reordered buffer, its
            ``TensorProto``); they coalesce into one hole that the next, smaller reorder's
            copies reuse, so about three copies of the largest stay. 3-3.5 fits the sessions of
            15 real models best (the byte classifier's one 2.5 MiB weight leaves 10 MiB).
        prepack_release_min_bytes: the largest inline weight a GEMM kernel pre-packs, when
            above this size, leaves no copy: glibc had mapped its original, so freeing it after
            packing unmaps it (and raises glibc's threshold, so later originals up to its size
            stay in the heap). Measured: one MatMul weight of 5-12 MiB holds 1.0 x W after
            session creation, of 2 or 4 MiB 2.0 x; two of 8 MiB 1.5 x; four of 16 MiB 1.75 x
            (docs/memory.md). Convolution weights (reordered by the NCHWc transformer, not
            pre-packed) are not measured to do so and keep ``prepack_factor``.
        arena_factor: resident bytes per byte of the activation liveness peak (1.0 measured with
            the arena on and off: memory patterns place activations as the liveness model does).
        arena_fragmentation_factor: with ``arena_simulation`` off (or past
            ``ARENA_SIMULATION_MAX_BUFFERS``) ``F`` is this many extra resident bytes per byte of
            ``min(L, A - L)``: the first run of a model whose activations differ in size holds
            up to one more largest activation beyond the liveness peak (freed blocks the next
            request does not fit), capped by what else is live when one tensor dominates (a
            128 MiB tensor added 10-13 MB, not 128). Fitted: 0.5 puts 21 of 28 real-model cases
            within 15% (18 at 1.0 and at 0); chains of equal-sized tensors show none.
        arena_simulation: replay onnxruntime's arena (best fit, splitting, coalescing, regions
            doubling from 1 MiB; ``graph_analysis._arena``) over the liveness order, and count
            the pages its tensors cover beyond the liveness peak, instead of the
            ``arena_fragmentation_factor`` term: on the real models' first runs the replay
            follows the measured anonymous growth within 0-3 MiB where the factor term was 5-11
            MiB under (OCR detector, table recognizer, layout detector); on GPT-2's exported
            graph it over-counted 16 MiB of LayerNorm/GELU intermediates the optimized graph
            does not have (docs/memory.md).
        planner_reuse: in the arena replay, let each tensor take over a dead buffer of the same
            shape as onnxruntime's allocation planner does (``FindReusableTensor``), holding that
            buffer idle between its tensors: only where the shapes onnxruntime planned with are
            known (its optimized graph's ``value_info``: fixed-shape models). Measured on the
            slider detector: its first run's real tensor sequence (traced with the arena off)
            replays to 98 MiB in regions of 16, 16, 32 and 64 MiB, as measured; the liveness
            order without the reuse to 44 MiB (docs/memory.md).
        half_upcast_factor: extra resident bytes per FLOAT16/BFLOAT16 weight byte. The x86 CPU
            execution provider lacks 16-bit kernels for most ops: onnxruntime inserts Casts to
            float and constant-folds them on weights, so a float copy (2 bytes per 16-bit byte)
            sits beside the original (measured: fp16 BERT session 30 MiB for 10 MiB of weights).
        half_activation_factor: size factor for 16-bit activations, computed in float for the
            same reason (the pre-packed copy of an upcast weight is float too).
        subgraph_session_bytes: resident bytes per subgraph (each ``If`` branch, ``Loop`` or
            ``Scan`` body gets its own session state: graph viewer, kernels, execution plan),
            from creation on: 128-190 KiB per subgraph measured on four VAD models with 2-50
            subgraphs (a 51-graph model: 20.8 MiB session for 2.2 MB of weights).
        heap_threshold_rises: ``W_heap`` follows glibc's threshold as the weights' copies move
            it (traced on ResNet-50, ``benchmarks/trace_session.py``): onnxruntime copies the
            weights in file order while freeing their parsed originals; a copy over the threshold
            (``heap_tensor_max_bytes`` at first) is mapped, and freeing its mapped original
            raises the threshold to that size, so every later weight up to it, one of the same
            size too, is copied in the heap and leaves a hole; the first run's arena regions
            under the raised threshold (and no larger than the largest hole) come from those
            holes. Off: a fixed threshold, ``W_heap`` the weights under
            ``heap_tensor_max_bytes``. Pre-packed GEMM weights over the threshold keep the
            pre-packing terms either way. Measured: ResNet-50 (9 of its 61 tensors, 55 of its
            89.5 MiB, are 4-9 MiB) 0.75 -> 0.83 of measured at batch 1, 0.90 -> 1.01 at batch 8;
            none of the 29 real-model cases, the Keras applications or the synthetic
            architectures changes.
        session_code_bytes: the part of ``session_fixed_bytes`` that is file-backed pages of
            onnxruntime's code (8.0 MiB on the weightless chain ``session_fixed_bytes`` comes
            from; 5.0 on another machine). How many pages a session maps depends on the page
            cache and the kernel, so where the estimate has onnxruntime's optimized graph, the
            pages its child's session creation mapped are measured and replace this figure:
            8.3-8.7 MiB on 16 real models, within 0.15 MiB of what the measuring child's
            session mapped for each (docs/memory.md).
        session_node_bytes: resident bytes per node the session holds (every graph's nodes but
            ``Constant``, in onnxruntime's optimized graph when the estimate reads it): the node,
            its ``NodeArg``s, its kernel and its execution-plan entries are thousands of small
            heap blocks. Measured (``benchmarks/calibrate_runtime.py``): weightless chains of 1,
            1000 and 2000 elementwise nodes grow the session's anonymous memory by 3.0 KiB per
            node, whatever the op; traced on 16 real models (``trace_session.py``), the live
            blocks under 4 KiB after creation grow with the optimized graph's nodes (1.1 MiB
            for 18 nodes to 3.2 MiB for 707).
        session_initializer_bytes: resident bytes per initializer the session holds beyond its
            data (its ``OrtValue``, ``NodeArg`` and name): 1.8-1.9 KiB measured on a chain of 1000
            ``Add`` nodes, each with its own 16-byte constant, beyond the plain chain.
    """

    session_fixed_bytes: int = 9_600_000
    run_fixed_bytes: int = 1 * MiB
    load_factor: float = 2.0
    resident_factor: float = 1.0
    heap_kept_factor: float = 1.0
    fusion_kept_factor: float = 1.4
    heap_reuse_region_max_bytes: int = 2 * MiB
    heap_tensor_max_bytes: int = 4 * MiB
    prepack_factor: float = 1.0
    prepack_release_min_bytes: int = 4 * MiB
    reorder_copies_factor: float = 3.0
    arena_factor: float = 1.0
    arena_fragmentation_factor: float = 0.5
    half_upcast_factor: float = 2.0
    half_activation_factor: float = 2.0
    subgraph_session_bytes: int = 180 * 1024
    session_code_bytes: int = 8 * MiB
    session_node_bytes: int = 3 * 1024
    session_initializer_bytes: int = 1900
    arena_simulation: bool = True
    planner_reuse: bool = True
    heap_threshold_rises: bool = True


# Ops whose constant weight input onnxruntime keeps a second, re-laid-out copy of (MLAS pre-packed
# GEMM panels, NCHWc-reordered filters, packed integer GEMM panels), by the weight's input index.
PREPACK_INPUTS: Mapping[str, int] = {
    "MatMul": 1,
    "Gemm": 1,
    "FusedMatMul": 1,
    "Conv": 1,
    "FusedConv": 1,
    "MatMulInteger": 1,
    "ConvInteger": 1,
    "DynamicQuantizeMatMul": 1,
    "MatMulIntegerToFloat": 1,
    "MatMulNBits": 1,
    "QLinearMatMul": 3,
    "QLinearConv": 3,
}

_HALF_TYPES = frozenset({DataType.FLOAT16, DataType.BFLOAT16})
# GEMM kernels pre-pack at session creation; convolutions reorder on the first run.
_GEMM_OPS = frozenset(op for op in PREPACK_INPUTS if "Conv" not in op)


@dataclass(frozen=True)
class InferenceEstimate:
    """Estimated memory for one inference with onnxruntime on CPU.

    Attributes:
        weights_bytes: counted: every initializer and Constant payload, dims x data type.
        prepackable_bytes: counted: weights consumed by ops whose kernels keep a pre-packed copy.
        half_upcast_bytes: estimated: float copies of FLOAT16/BFLOAT16 weights the CPU provider
            makes (``half_upcast_factor`` x their bytes).
        activations_peak_bytes: estimated: most activation bytes live at once over the node order.
        activations_sum_bytes: counted: the naive sum of every activation tensor (no reuse).
        largest_activation_bytes: counted: the largest single activation tensor.
        inputs_bytes: counted: the graph inputs (part of the activations).
        runtime_overhead_bytes: estimated: what the runtime adds beyond weights and activations,
            ``peak_bytes - weights_bytes - activations_peak_bytes`` (fixed session and run costs,
            or the extra weight copy held during session creation when that is the peak).
        peak_bytes: estimated peak resident growth of the process, session creation through one
            inference, per :class:`OrtCpuModel`: the larger of the two phases below.
        session_creation_bytes: estimated growth at the peak of session creation.
        inference_bytes: estimated growth at the peak of the first inference.
        peak_nodes: the node(s) running at the activation peak.
        peak_tensors: the largest tensors live at the activation peak (up to 10).
        runtime: the runtime model used.
        subgraph_state_bytes: estimated: the subgraphs' own session states
            (``subgraph_session_bytes`` x the number of subgraphs).
        graph_state_bytes: estimated: the session's state for the nodes and initializers it
            holds (``session_node_bytes`` x nodes + ``session_initializer_bytes`` x
            initializers).
        code_pages_bytes: the file-backed pages of onnxruntime's code a session maps, part of
            the fixed cost: measured by the child that made onnxruntime's optimized graph
            (``code_pages_measured``), else ``OrtCpuModel.session_code_bytes`` (assumed).
        code_pages_measured: whether ``code_pages_bytes`` was measured on this machine.
        heap_kept_bytes: estimated: load-time copies of small weight tensors glibc's heap keeps
            after session creation (``heap_kept_factor x W_heap``).
        fusion_kept_bytes: estimated: the copies of the Conv weights onnxruntime fuses a
            BatchNormalization into, kept by glibc's heap (``fusion_kept_factor x W_bn``).
        heap_reused_bytes: estimated: the first run's arena pages served from what glibc's heap
            kept (``H``), so not grown: the replayed arena's regions up to
            ``heap_reuse_region_max_bytes``, at most ``H`` (0 without ``arena_simulation``).
        arena_fragmentation_bytes: estimated: what the arena holds beyond the liveness peak on
            the first run (the replayed arena's written pages plus the inputs, minus the peak;
            ``arena_fragmentation_factor x min(L, A - L)`` without ``arena_simulation``).
        timeline: estimated: activation bytes live while each node of the main graph runs, in
            execution order (the liveness the peak comes from).
        timeline_nodes: the node of each step of ``timeline`` (its name, or ``<op>_<index>``).
        activations_graph: the graph the activation figures (peak, sum, largest, timeline, peak
            nodes and tensors) come from: ``exported`` (the model as stored) or onnxruntime's
            optimized graph (:class:`ExecutedGraph`'s description).
        exported_activations_peak_bytes: estimated: the exported graph's liveness peak, when the
            activations come from another graph (None otherwise).
    """

    weights_bytes: int
    prepackable_bytes: int
    half_upcast_bytes: int
    activations_peak_bytes: int
    activations_sum_bytes: int
    largest_activation_bytes: int
    inputs_bytes: int
    runtime_overhead_bytes: int
    peak_bytes: int
    session_creation_bytes: int
    inference_bytes: int
    peak_nodes: tuple[str, ...]
    peak_tensors: tuple[LiveTensor, ...]
    runtime: OrtCpuModel
    heap_kept_bytes: int = 0
    arena_fragmentation_bytes: int = 0
    subgraph_state_bytes: int = 0
    graph_state_bytes: int = 0
    code_pages_bytes: int = 0
    code_pages_measured: bool = False
    fusion_kept_bytes: int = 0
    heap_reused_bytes: int = 0
    timeline: tuple[int, ...] = ()
    timeline_nodes: Sequence[str] = ()
    activations_graph: str = EXPORTED_GRAPH
    exported_activations_peak_bytes: int | None = None


@dataclass(frozen=True)
class TrainingItem:
    """One line of the training estimate: what, bytes, the formula, and when it is held.

    Attributes:
        name: the item (``weights``, ``saved_activations``, ...).
        nbytes: its bytes.
        formula: how they were computed.
        phases: the phases of a step during which the item is held (see :class:`StepPhase`).
    """

    name: str
    nbytes: int
    formula: str
    phases: tuple[StepPhase, ...] = _ALL_PHASES


@dataclass(frozen=True)
class TrainingEstimate:
    """Estimated peak memory of one training step (forward, backward, optimizer step).

    Each item is held during some phases of the step (:class:`StepPhase`); a phase holds the sum
    of its items, and a step peaks at its largest phase. The first step never holds the optimizer
    state and the activations together; later steps do.

    Attributes:
        optimizer: the optimizer assumed.
        precision: the precision assumed.
        checkpointing: fraction of saved activations kept (1.0: no activation checkpointing).
        loss: the loss assumed (never ``auto``: the choice made).
        loss_reason: why that loss (the user's choice, or what the graph's output looks like).
        saved_activations_bytes: estimated: every buffer autograd keeps for backward (x the
            checkpointing fraction, x 1/2 for 16-bit); the items count the part still held at
            the peak of backward.
        trainable_parameters: counted: elements of floating-point initializers that are parameters
            (BatchNorm running statistics and integer tensors excluded).
        frozen_bytes: counted: non-trainable buffers (running statistics, integer tensors).
        items: the itemised lines (weights, gradients, optimizer state, master copy, saved
            activations, working memory, loss, framework overhead), each with its phases.
        phase_bytes: estimated: bytes held in each phase (the sum of its items).
        first_step_peak_bytes: estimated: peak of the first step, the larger of ``first_backward``
            and ``optimizer_step``.
        peak_bytes: estimated: the steady-state peak (every step from the second on), the larger
            of ``backward`` and ``optimizer_step``; what a training run needs.
        basis: what the figure models (PyTorch on CPU, or framework-neutral).
    """

    optimizer: Optimizer
    precision: TrainingPrecision
    checkpointing: float
    loss: Loss
    loss_reason: str
    saved_activations_bytes: int
    trainable_parameters: int
    frozen_bytes: int
    items: tuple[TrainingItem, ...]
    phase_bytes: Mapping[StepPhase, int]
    first_step_peak_bytes: int
    peak_bytes: int
    basis: str

    @property
    def steady_peak_bytes(self) -> int:
        """The steady-state peak (from the second step on): ``peak_bytes``."""
        return self.peak_bytes

    @property
    def first_step_peak_phase(self) -> StepPhase:
        """The phase where the first step peaks."""
        return _peak_phase(self.phase_bytes, StepPhase.FIRST_BACKWARD)

    @property
    def steady_peak_phase(self) -> StepPhase:
        """The phase where later steps peak."""
        return _peak_phase(self.phase_bytes, StepPhase.BACKWARD)

    def item(self, name: str) -> int:
        """Bytes of the item called ``name`` (0 when absent)."""
        return next((i.nbytes for i in self.items if i.name == name), 0)


@dataclass(frozen=True)
class MemoryEstimate:
    """The result of :func:`estimate_memory`: shapes used, inference and (optionally) training."""

    path: str | None
    shapes: InferredShapes
    inference: InferenceEstimate
    training: TrainingEstimate | None = None
    assumptions: Mapping[str, object] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------


def _tensor_sizes(
    shapes: InferredShapes, half_factor: float = 1.0, table: NodeTable | None = None
) -> TensorSizes:
    """The bytes of every tensor, by graph (outer scopes searched from inner graphs when called);
    the main graph's edges by the ids of its node ``table`` when given.

    Unknown tensors take their assumed size; 16-bit float tensors are scaled by ``half_factor``.
    """
    sizes = TensorSizes({MAIN_GRAPH: table} if table is not None else None)
    # dims tuples are shared between tensors of one shape: each (type, dims) is sized once
    sized: dict[tuple[object, object], int | None] = {}
    for t in shapes.tensors:
        key = (t.data_type, t.dims)
        nb = sized.get(key, -1)
        if nb == -1:
            nb = sized[key] = t.nbytes
        if nb is not None:
            scale = half_factor if t.data_type in _HALF_TYPES else 1.0
            sizes.set(t.graph, t.name, int(nb * scale))
    for u in shapes.unknown:
        sizes.set(u.graph, u.name, u.assumed_nbytes)
    return sizes


def estimate_memory(
    model: str | Path | onnx.ModelProto,
    bindings: Bindings | None = None,
    *,
    train: bool = False,
    optimizer: Optimizer = Optimizer.ADAM,
    precision: TrainingPrecision = TrainingPrecision.FP32,
    checkpointing: float = 1.0,
    runtime: OrtCpuModel | None = None,
    default_dim: int | None = 1,
    inputs_live_whole_run: bool = True,
    alias_ops: frozenset[str] = ALIAS_OPS,
    training_framework_bytes: int = 1 * MiB,
    loss: Loss = Loss.AUTO,
    loss_output_factor: float | None = None,
    optimizer_temporaries: float = 3.0,
    conv_backward_factor: float = 1.0,
    lstm_workspace_factor: float = 5.0,
    lstm_backward_factor: float = 13.0,
    conv_scratchpad_bytes: int = 6_900_000,
    pytorch_basis: bool = False,
    executed_graph: ExecutedGraph | None = None,
    reading: Reading | None = None,
) -> MemoryEstimate:
    """Estimate inference (and optionally training) memory of an ONNX model.

    Args:
        model: a path (read as a weight-free skeleton) or a loaded model (not modified).
        bindings: input bindings (``--input-shape``/``--dim``/``--batch``).
        train: also estimate one training step.
        optimizer: optimizer whose state is counted (``train`` only).
        precision: training precision (``train`` only).
        checkpointing: fraction of saved activations kept for backward, in (0, 1]: 1.0 without
            activation checkpointing, about ``1/sqrt(layers)`` with checkpointing every sqrt(n).
        runtime: the onnxruntime CPU model (defaults: measured constants).
        default_dim: value for dims nobody bound; None makes an unbound dim an error.
        inputs_live_whole_run: graph inputs are held by the caller for the whole run.
        alias_ops: ops whose output is a view of their input (no new buffer).
        training_framework_bytes: fixed memory a training step adds beyond its tensors (about
            1 MiB measured for PyTorch 2.13 on CPU once the process has run one step; the one-time
            initialisation, about 80 MiB of lazy imports, is the process's, not the model's).
        loss: the loss applied to the first floating-point graph output (``train`` only);
            ``auto`` chooses cross-entropy for logits, mean-square error otherwise.
        loss_output_factor: multiples of that output's bytes the loss holds at the start of
            backward, overriding the loss's own (:data:`LOSS_OUTPUT_FACTORS`: cross-entropy 3,
            mean-square error 2, sum 1) for a custom loss.
        optimizer_temporaries: temporaries of the optimizer step, in multiples of the largest
            trainable tensor, for Adam/AdamW (PyTorch's single-tensor Adam on CPU computes
            ``exp_avg_sq.sqrt() / bias_correction`` out of place: 3 measured with PyTorch 2.13
            on 4 MiB and 16 MiB parameters, on the first step and later); SGD updates in place.
        conv_backward_factor: buffers PyTorch's oneDNN convolution backward holds beyond the
            gradients, in multiples of one convolution's input plus output bytes, for
            convolutions with a kernel larger than 1x1 (1.0 measured: the output gradient and the
            input reordered to oneDNN's blocked layout; transient, so the largest such
            convolution counts, once).
        lstm_workspace_factor: resident bytes of the workspace PyTorch's oneDNN LSTM keeps for
            backward, in multiples of the LSTM's output ``Y`` (saved with its input and
            outputs): 5 measured (6.1 x Y held after forward, Y included, over five shapes).
        conv_scratchpad_bytes: oneDNN's persistent scratchpad once the process has run a
            stride-1 convolution with a kernel above 1x1, at most (6.6-7.0 MiB measured from
            batch 8 at 32x32 to 224x224 maps, whatever the channels; once per process, not per
            convolution); on tiny maps 16 x that convolution's output instead.
        lstm_backward_factor: scratch the oneDNN LSTM backward holds while it runs, in multiples
            of ``Y`` beyond the input's and output's gradients: 11-15 measured at
            batch x hidden >= 4096, more on smaller shapes.
        pytorch_basis: label the training figure as modelling PyTorch on CPU (the source was a
            PyTorch model) rather than framework-neutral.
        executed_graph: the graph onnxruntime runs for this model (its optimized graph); the
            inference activations come from its liveness instead of the exported graph's when
            its shapes are as well known (docs/memory.md, "Layout transforms"). Weights, the
            training estimate and ``shapes`` stay the exported graph's. Nothing is run here.
        reading: the one reading of the file ``model`` names
            (:func:`graph_analysis._weights.weights_and_skeleton`), when the caller already made it.

    Raises:
        ShapeBindingError: a binding that does not fit the graph.
        ModelFormatError: not an ONNX model.
        ValueError: ``checkpointing`` outside (0, 1].
    """
    if not 0.0 < checkpointing <= 1.0:
        raise ValueError(f"checkpointing must be in (0, 1], got {checkpointing}")
    path: str | None = None
    table: NodeTable | None = None
    if isinstance(model, (str, Path)):
        # One reading: the weights, the skeleton handed to shape inference and the node table
        # all derive from it.
        path = str(model)
        stored, model, table = reading if reading is not None else weights_and_skeleton(model)
    else:
        stored = read_weights(model)
    graph = model.graph
    table = table if table is not None else NodeTable.of_proto(graph)
    runtime = runtime or OrtCpuModel()
    shapes = infer_shapes(
        model, bindings, default_dim=default_dim, path=path, stored=stored, table=table
    )

    sizes_at: dict[float, TensorSizes] = {}  # by half_factor: each table made once

    def sizes(half_factor: float = 1.0) -> TensorSizes:
        if half_factor not in sizes_at:
            sizes_at[half_factor] = _tensor_sizes(shapes, half_factor, table)
        return sizes_at[half_factor]

    def live(
        half_factor: float = 1.0, workspace_of: Callable[[str, onnx.NodeProto], int] | None = None
    ) -> GraphLiveness:
        with gc_paused():
            return analyze_liveness(
                graph,
                sizes(half_factor),
                stored=stored.names_in,
                inputs_live_whole_run=inputs_live_whole_run,
                alias_ops=alias_ops,
                workspace_of=workspace_of,
                table=table,
            )

    liveness = live()
    subgraphs, op_types, nodes = _op_census(model, table)
    totals = _weight_totals(
        stored,
        heap_tensor_max_bytes=runtime.heap_tensor_max_bytes,
        subgraphs=subgraphs,
        nodes=nodes,
        record_rule=runtime.heap_threshold_rises,
        bn_fused=bn_fused_conv_bytes(model, stored)
        if {"Conv", "BatchNormalization"} <= op_types
        else 0,
    )
    # Inference also counts the scratch onnxruntime's kernels hold while they run (training
    # models PyTorch, which has none of it).
    workspace = _workspace_function(model, shapes) if op_types & WORKSPACE_OPS else None
    inference_liveness = liveness if workspace is None else live(workspace_of=workspace)
    runtime_liveness = inference_liveness
    if (
        any(t.data_type in _HALF_TYPES for t in shapes.tensors)
        and runtime.half_activation_factor != 1
    ):
        runtime_liveness = live(runtime.half_activation_factor, workspace)
    inputs_bytes = sum(t.nbytes or 0 for t in shapes.inputs)
    if executed_graph is not None:
        # It says which convolutions the NCHWc transformer reordered, and holds the nodes and
        # initializers the session keeps.
        executed_model = executed_graph.model
        totals = replace(
            totals,
            largest_reordered=largest_reordered_conv_bytes(executed_graph),
            nodes=_op_census(executed_model, NodeTable.of_proto(executed_model.graph))[2],
            initializers=len(executed_graph.stored.tensors),
            measured_code=executed_graph.session_code_bytes,
        )
    inference = _inference_estimate(
        totals, totals.prepackable, inference_liveness, runtime_liveness, inputs_bytes, runtime
    )
    executed_note = None
    if executed_graph is not None:
        executed_note = _executed_note(shapes, runtime)
        if executed_note is None:
            executed = _executed_liveness(
                executed_graph,
                bindings,
                exported_unknown_bytes=sum(u.assumed_nbytes for u in shapes.unknown),
                default_dim=default_dim,
                inputs_live_whole_run=inputs_live_whole_run,
                alias_ops=alias_ops,
            )
            if isinstance(executed, str):
                executed_note = executed
            else:
                inference = replace(
                    _inference_estimate(
                        totals,
                        totals.prepackable,
                        executed,
                        executed,
                        inputs_bytes,
                        runtime,
                        planner_keys(
                            executed_graph.model.graph, executed.buffer_spans, executed.buffer_names
                        ),
                    ),
                    activations_graph=executed_graph.description,
                    exported_activations_peak_bytes=inference_liveness.peak_bytes,
                )
    training = None
    if train:
        training = _training_estimate(
            model,
            shapes,
            stored,
            liveness,
            sizes(),
            optimizer=Optimizer(optimizer),
            precision=TrainingPrecision(precision),
            checkpointing=checkpointing,
            alias_ops=alias_ops,
            framework_bytes=training_framework_bytes,
            optimizer_temporaries=optimizer_temporaries,
            loss=Loss(loss),
            loss_output_factor=loss_output_factor,
            conv_backward_factor=conv_backward_factor,
            lstm_factors=(lstm_workspace_factor, lstm_backward_factor),
            conv_scratchpad_bytes=conv_scratchpad_bytes,
            pytorch_basis=pytorch_basis,
        )
    assumptions: dict[str, object] = {
        "default_dim": default_dim,
        "inputs_live_whole_run": inputs_live_whole_run,
        "alias_ops": sorted(alias_ops),
        "runtime": runtime,
        "activations_graph": inference.activations_graph,
    }
    if executed_note is not None:
        assumptions["executed_graph_not_used"] = executed_note
    return MemoryEstimate(path, shapes, inference, training, assumptions)


def _op_census(model: onnx.ModelProto, table: NodeTable) -> tuple[int, frozenset[str], int]:
    """The number of subgraphs, the op types of every graph and the number of nodes a session
    holds (every graph's nodes but ``Constant``, which becomes an initializer), from the main
    graph's node table and the nodes that hold subgraphs: the passes that look for one op type
    (fused convolutions, kernel workspaces) run only where it occurs."""
    subgraphs = 0
    op_types = set(table.op_types())
    nodes = len(table) - sum(
        table.op.count(i) for i, (_domain, op) in enumerate(table.op_keys) if op == "Constant"
    )
    for index in table.with_subgraphs:
        for _suffix, sub in subgraphs_of(model.graph.node[index]):
            for _path, graph in iter_graphs(sub):
                subgraphs += 1
                op_types.update(node.op_type for node in graph.node)
                nodes += sum(1 for node in graph.node if node.op_type != "Constant")
    return subgraphs, frozenset(op_types), nodes


#: How many more bytes the optimized graph's unknown-shape tensors may be assumed at than the
#: exported graph's for its liveness to be used.
EXECUTED_UNKNOWN_MARGIN_BYTES = 1 << 20


def _executed_note(shapes: InferredShapes, runtime: OrtCpuModel) -> str | None:
    """Why the executed graph's liveness cannot stand for the exported graph's, or None."""
    if runtime.half_activation_factor != 1 and any(
        t.data_type in _HALF_TYPES for t in shapes.tensors
    ):
        # The half-precision terms were calibrated on the exported graph (the Casts onnxruntime
        # inserts are counted by half_activation_factor, not read from its graph).
        return "16-bit float activations: the exported graph with half_activation_factor is used"
    return None


def _executed_liveness(
    executed: ExecutedGraph,
    bindings: Bindings | None,
    *,
    exported_unknown_bytes: int,
    default_dim: int | None,
    inputs_live_whole_run: bool,
    alias_ops: frozenset[str],
) -> GraphLiveness | str:
    """The liveness of onnxruntime's optimized graph, or why it is not used: its tensors without a
    known shape, sized by the fallback rule, come to more than
    :data:`EXECUTED_UNKNOWN_MARGIN_BYTES` beyond the exported graph's (a fused op downstream of
    a data-dependent shape adds a few small ones; a missing shape rule would add many large)."""
    try:
        shapes = infer_shapes(
            executed.model,
            bindings,
            default_dim=default_dim,
            stored=executed.stored,
            nchwc_block_size=executed.nchwc_block_size,
        )
    except ModelsizeError as e:  # the exported graph took the same bindings: never the user's fault
        return f"onnxruntime's optimized graph refused the bindings ({e.message}): the exported graph is used"
    unknown_bytes = sum(u.assumed_nbytes for u in shapes.unknown)
    if unknown_bytes > exported_unknown_bytes + EXECUTED_UNKNOWN_MARGIN_BYTES:
        first = shapes.unknown[0]
        return (
            f"{len(shapes.unknown)} tensor(s) of onnxruntime's optimized graph without a known "
            f"shape, assumed at {unknown_bytes} B against {exported_unknown_bytes} B in the "
            f"exported graph (first: {first.name!r} from {first.producer}): the exported graph "
            "is used"
        )
    return analyze_liveness(
        executed.model.graph,
        _tensor_sizes(shapes),
        stored=executed.stored.names_in,
        inputs_live_whole_run=inputs_live_whole_run,
        alias_ops=alias_ops,
        workspace_of=_workspace_function(executed.model, shapes),
    )


#: Op types whose onnxruntime CPU kernel holds scratch while it runs, modelled by
#: :func:`_workspace_function`.
WORKSPACE_OPS = frozenset({"ConvTranspose"})


def _workspace_function(
    model: onnx.ModelProto, shapes: InferredShapes
) -> Callable[[str, onnx.NodeProto], int] | None:
    """``(graph_path, node) -> bytes`` of scratch onnxruntime's CPU kernels hold while the node
    runs, or None when the graph has no such node.

    ``ConvTranspose`` (``core/providers/cpu/nn/conv_transpose.cc``) allocates its column buffer
    from the arena for the call: ``C_out / group x kernel elements`` rows by the input's spatial
    elements, of the input's element type (weight ``[C_in, C_out / group, k...]``): as large as
    the output for a stride-k, kernel-k upsampling (9.4 MiB on the OCR detector at 640x640). A
    node whose shapes are unknown counts 0.
    """
    if not any(
        n.op_type in WORKSPACE_OPS and n.domain in ("", "ai.onnx")
        for _path, graph in iter_graphs(model.graph)
        for n in graph.node
    ):
        return None
    lookup = shapes.lookup()

    def workspace(path: str, node: onnx.NodeProto) -> int:
        if node.op_type not in WORKSPACE_OPS or node.domain not in ("", "ai.onnx"):
            return 0
        if len(node.input) < 2:
            return 0
        x = _scoped(lookup, path, node.input[0])
        w = _scoped(lookup, path, node.input[1])
        if x is None or w is None or not x.is_known or not w.is_known:
            return 0
        x_dims, w_dims = x.dims or (), w.dims or ()
        elements = x.num_elements
        if len(x_dims) < 3 or len(w_dims) != len(x_dims) or not elements or x.nbytes is None:
            return 0
        rows = 1
        for d in w_dims[1:]:
            rows *= int(d)
        columns = 1
        for d in x_dims[2:]:
            columns *= int(d)
        return rows * columns * (x.nbytes // elements)

    return workspace


def _scoped(
    lookup: Mapping[tuple[str, str], TensorShape], path: str, name: str
) -> TensorShape | None:
    """``name``'s shape seen from graph ``path`` (outer scopes searched)."""
    return next(
        (lookup[(scope, name)] for scope in enclosing_scopes(path) if (scope, name) in lookup),
        None,
    )


@dataclass(frozen=True)
class _WeightTotals:
    """Weight byte totals the runtime model needs (all counted from the graph)."""

    weights: int
    inline_prepackable: int
    half: int
    external: int
    external_packed: int
    largest_external_packed: int
    prepackable: int = 0
    heap: int = 0
    subgraphs: int = 0
    nodes: int = 0
    initializers: int = 0
    measured_code: int | None = None  # the optimizing child's code pages, when it measured them
    bn_fused: int = 0
    largest_inline_packed: int = 0
    inline_gemm_over_heap: int = 0
    largest_reordered: int = 0
    # Arena blocks under it may reuse the weights' holes (_heap_originals); 0: the rule is off.
    heap_threshold: int = 0


def _weight_totals(
    stored: ModelWeights,
    *,
    heap_tensor_max_bytes: int,
    subgraphs: int,
    nodes: int = 0,
    bn_fused: int = 0,
    record_rule: bool = False,
) -> _WeightTotals:
    """The runtime model's weight figures from the one reading: every tensor onnxruntime holds as
    an initializer (every role, unused ones too: they are parsed at session creation) at its dense
    size; pre-packed ones by the slot their readers read them in; ``heap``: inline tensors under
    ``heap_tensor_max_bytes`` (their load-time copies stay in glibc's heap); ``largest_reordered``:
    the largest 2-D float convolution weight under ``heap_tensor_max_bytes`` (the NCHWc
    reorder's candidates; the executed graph, when there is one, says which were reordered, and
    up to :data:`GLIBC_MMAP_THRESHOLD_MAX`)."""
    packed = [t for t in stored.tensors if any(PREPACK_INPUTS.get(op) == k for op, k in t.readers)]
    external_packed = [
        t.nbytes for t in packed if t.external and any(op in _GEMM_OPS for op, _k in t.readers)
    ]
    gemm = [t for t in packed if not t.external and any(op in _GEMM_OPS for op, _k in t.readers)]
    inline_gemm = [t.nbytes for t in gemm]
    heap, threshold = (
        _heap_originals(stored, heap_tensor_max_bytes, frozenset((t.graph, t.name) for t in gemm))
        if record_rule
        else (
            sum(
                t.nbytes
                for t in stored.tensors
                if not t.external and 0 < t.nbytes < heap_tensor_max_bytes
            ),
            0,  # off: the regions reusing the holes are heap_reuse_region_max_bytes's alone
        )
    )
    return _WeightTotals(
        weights=sum(t.nbytes for t in stored.tensors),
        inline_prepackable=sum(t.nbytes for t in packed if not t.external),
        half=sum(t.nbytes for t in stored.tensors if t.data_type in _HALF_TYPES and t.readers),
        external=sum(t.nbytes for t in stored.tensors if t.external),
        external_packed=sum(external_packed),
        largest_external_packed=max(external_packed, default=0),
        prepackable=sum(t.nbytes for t in packed),
        heap=heap,
        subgraphs=subgraphs,
        nodes=nodes,
        initializers=len(stored.tensors),
        bn_fused=bn_fused,
        largest_inline_packed=max(inline_gemm, default=0),
        inline_gemm_over_heap=sum(n for n in inline_gemm if n >= heap_tensor_max_bytes),
        heap_threshold=threshold,
        largest_reordered=max(
            (
                t.nbytes
                for t in stored.tensors
                if not t.external
                and t.nbytes < heap_tensor_max_bytes
                and len(t.dims) == 4
                and t.data_type == DataType.FLOAT
                and ("Conv", 1) in t.readers
            ),
            default=0,
        ),
    )


def _heap_originals(
    stored: ModelWeights, threshold: int, packed: frozenset[tuple[str, str]]
) -> tuple[int, int]:
    """Bytes of the weights whose load-time copy glibc serves from its heap (a hole once the
    session frees it), and the size under which the first run's blocks can be served from those
    holes: glibc's mmap threshold after the weights, at most just over the largest hole. In the
    order onnxruntime copies the weights (the file's), a copy over the threshold is mapped, and
    freeing its mapped original raises the threshold to that block's size (up to
    :data:`GLIBC_MMAP_THRESHOLD_MAX`): only a weight larger than every earlier one over
    ``threshold`` escapes the heap; later ones of its size do not (their blocks fall just under
    the raised threshold). GEMM weights pre-packed at or over ``threshold`` (``packed``, by graph
    and name) raise it too but are left to the pre-packing terms (their originals are freed while
    the session is made, and measured to stay only beside the largest's)."""
    start = threshold
    heap = largest = 0
    for t in stored.tensors:
        if t.external or t.nbytes <= 0 or t.nbytes >= GLIBC_MMAP_THRESHOLD_MAX:
            continue
        if t.nbytes > threshold:
            threshold = t.nbytes
        elif not (t.nbytes >= start and (t.graph, t.name) in packed):
            heap += t.nbytes
            largest = max(largest, t.nbytes)
    return heap, min(threshold, largest + 1)


#: The domain of onnxruntime's NCHWc layout ops (``contrib_ops/cpu/nchwc_ops.cc``).
NCHWC_DOMAIN = "com.microsoft.nchwc"
#: glibc's ceiling for its dynamic mmap threshold (``DEFAULT_MMAP_THRESHOLD_MAX``, 64-bit): by the
#: time the graph is rewritten, freeing the parsed copies of the weights has raised the threshold
#: to the largest of them, so the rewrite's copies up to this size come from the heap.
GLIBC_MMAP_THRESHOLD_MAX = 32 * MiB


def planner_keys(
    graph: onnx.GraphProto,
    spans: Sequence[tuple[int, int, int]],
    names: Sequence[str],
) -> list[Hashable | None]:
    """For each buffer of the liveness (``spans``, in creation order, made by the tensors
    ``names``: :attr:`GraphLiveness.buffer_names`), the shape and element type onnxruntime's
    allocation planner knows for it: the ``value_info`` of its own optimized graph (what it
    inferred at session creation: dynamic dimensions by name), or None where it knows none
    (never reused; :func:`graph_analysis._arena.planned_buffers`). The graph's inputs (step -1)
    are the caller's: None.
    """
    shapes: dict[str, Hashable] = {}
    for value_info in graph.value_info:
        tensor_type = value_info.type.tensor_type
        if not value_info.type.HasField("tensor_type") or not tensor_type.HasField("shape"):
            continue
        dims: list[int | str] = []
        for dim in tensor_type.shape.dim:
            if dim.HasField("dim_value"):
                dims.append(dim.dim_value)
            elif dim.dim_param:
                dims.append(dim.dim_param)
            else:
                break
        else:
            if dims:  # a scalar is never reused (``dim_size() == 0``)
                shapes[value_info.name] = (tensor_type.elem_type, tuple(dims))
    keys: list[Hashable | None] = []
    for (nbytes, first, _last), name in zip(spans, names, strict=True):
        shape = shapes.get(name) if first >= 0 else None
        keys.append(None if shape is None else (nbytes, shape))
    return keys


def largest_reordered_conv_bytes(executed: ExecutedGraph) -> int:
    """The largest weight (under :data:`GLIBC_MMAP_THRESHOLD_MAX`) of an NCHWc ``Conv`` in
    onnxruntime's optimized graph: the convolution weights the NCHWc transformer reordered, at
    their reordered (channel-padded) size."""
    sizes = {t.name: t.nbytes for t in executed.stored.tensors if not t.external}
    reordered = (
        sizes.get(node.input[1], 0)
        for node in executed.model.graph.node
        if node.domain == NCHWC_DOMAIN and node.op_type == "Conv" and len(node.input) > 1
    )
    return max((n for n in reordered if n < GLIBC_MMAP_THRESHOLD_MAX), default=0)


def bn_fused_conv_bytes(model: onnx.ModelProto, stored: ModelWeights) -> int:
    """Bytes of the stored ``Conv`` weights onnxruntime fuses a ``BatchNormalization`` into.

    onnxruntime's ``ConvBNFusion`` (basic level and up) folds a ``BatchNormalization`` whose
    input is a ``Conv`` output read by nothing else into the conv's weights and bias, writing
    new ones. Counted over the main graph and every subgraph: the conv's weight (input 1) when it
    is a stored tensor of that graph or an outer scope, once per weight.
    """
    sizes: dict[tuple[str, str], int] = {(t.graph, t.name): t.nbytes for t in stored.tensors}
    fused: set[tuple[str, str]] = set()
    for path, graph in iter_graphs(model.graph):
        # Conv output -> its weight; then the op types reading each of those outputs (only
        # those: a table of every name's readers took 500 MB on a 10^6-node graph).
        weight_of = {
            node.output[0]: node.input[1]
            for node in graph.node
            if node.op_type == "Conv"
            and node.domain in ("", "ai.onnx")
            and len(node.input) >= 2
            and node.output
        }
        if not weight_of:
            continue
        for o in graph.output:
            weight_of.pop(o.name, None)
        readers: dict[str, list[str]] = {}
        for node in graph.node:
            for name in node.input:
                if name in weight_of:
                    readers.setdefault(name, []).append(node.op_type)
        for output, weight in weight_of.items():
            if readers.get(output) != ["BatchNormalization"]:
                continue
            scope = next((s for s in enclosing_scopes(path) if (s, weight) in sizes), None)
            if scope is not None:
                fused.add((scope, weight))
    return sum(sizes[key] for key in fused)


def _inference_estimate(
    totals: _WeightTotals,
    prepackable: int,
    liveness: GraphLiveness,
    runtime_liveness: GraphLiveness,
    inputs_bytes: int,
    runtime: OrtCpuModel,
    reuse_keys: Sequence[Hashable | None] | None = None,
) -> InferenceEstimate:
    weights_bytes = totals.weights
    upcast = runtime.half_upcast_factor * totals.half
    inline = weights_bytes - totals.external
    # Session creation: inline weights are read, parsed and copied (load_factor); external ones are
    # memory-mapped, and only the GEMM weights being pre-packed are touched, one mapping at a time.
    creation = (
        runtime.load_factor * inline
        + totals.external_packed
        + totals.largest_external_packed
        + upcast
    )
    # Inference: every weight resident once (external pages as they are read), what glibc's heap
    # kept of the small tensors' load-time copies, the packed copies of inline weights whose
    # originals stay in the initializer block, the activations and the arena's fragmentation.
    # The first run's arena regions under glibc's threshold come from the heap's holes: regions
    # up to heap_reuse_region_max_bytes, or under the threshold the weights raised, when holes
    # that large exist.
    reuse_max = max(runtime.heap_reuse_region_max_bytes, totals.heap_threshold - 1)
    fragmentation, small_regions = _arena_fragmentation(
        runtime_liveness, runtime, reuse_keys, reuse_max
    )
    # What glibc's heap keeps of session creation (traced: benchmarks/trace_session.py): the
    # originals of the tensors under its mmap threshold (freed when the session is made, after the
    # copies that replace them), the three copies the NCHWc reorder of the largest convolution
    # weight frees together, and the weights BatchNormalization fusion rewrote; the first run's
    # small arena regions reuse it.
    heap_kept = (
        runtime.heap_kept_factor * totals.heap
        + runtime.reorder_copies_factor * totals.largest_reordered
    )
    fusion_kept = runtime.fusion_kept_factor * totals.bn_fused
    # Pre-packed GEMM weights above the threshold: their originals were mapped, and the largest
    # one's is unmapped when freed (raising glibc's threshold, so the others stay in the heap).
    released = (
        totals.largest_inline_packed
        if totals.largest_inline_packed > runtime.prepack_release_min_bytes
        else 0
    )
    prepacked = runtime.prepack_factor * max(0, totals.inline_gemm_over_heap - released)
    reused = min(heap_kept + fusion_kept + prepacked, small_regions)
    running = (
        runtime.resident_factor * weights_bytes
        + heap_kept
        + fusion_kept
        + upcast
        + prepacked
        + runtime.arena_factor * runtime_liveness.peak_bytes
        + fragmentation
        - reused
        + runtime.run_fixed_bytes
    )
    graph_state = (
        runtime.session_node_bytes * totals.nodes
        + runtime.session_initializer_bytes * totals.initializers
    )
    # The code pages a session maps: measured where the optimizing child created this model's
    # session (the same pages a process running it maps), else the default's share.
    code = runtime.session_code_bytes if totals.measured_code is None else totals.measured_code
    fixed = (
        runtime.session_fixed_bytes
        - runtime.session_code_bytes
        + code
        + runtime.subgraph_session_bytes * totals.subgraphs
        + graph_state
    )
    peak = int(fixed + max(creation, running))
    return InferenceEstimate(
        weights_bytes=weights_bytes,
        prepackable_bytes=prepackable,
        half_upcast_bytes=int(upcast),
        activations_peak_bytes=liveness.peak_bytes,
        activations_sum_bytes=liveness.sum_bytes,
        largest_activation_bytes=liveness.largest_tensor_bytes,
        inputs_bytes=inputs_bytes,
        runtime_overhead_bytes=peak - weights_bytes - liveness.peak_bytes,
        peak_bytes=peak,
        session_creation_bytes=int(fixed + creation),
        inference_bytes=int(fixed + running),
        peak_nodes=liveness.peak_nodes,
        peak_tensors=liveness.peak_tensors[:10],
        runtime=runtime,
        heap_kept_bytes=int(heap_kept),
        arena_fragmentation_bytes=int(fragmentation),
        fusion_kept_bytes=int(fusion_kept),
        heap_reused_bytes=int(reused),
        subgraph_state_bytes=runtime.subgraph_session_bytes * totals.subgraphs,
        graph_state_bytes=graph_state,
        code_pages_bytes=code,
        code_pages_measured=totals.measured_code is not None,
        timeline=liveness.step_bytes,
        timeline_nodes=liveness.step_labels,
    )


#: Above this many buffers the arena is not replayed (its free list is a sorted Python list): the
#: ``arena_fragmentation_factor`` term stands in. The liveness records no spans past it.
ARENA_SIMULATION_MAX_BUFFERS = MAX_SPANS


def _arena_fragmentation(
    liveness: GraphLiveness,
    runtime: OrtCpuModel,
    reuse_keys: Sequence[Hashable | None] | None,
    reuse_max: int,
) -> tuple[float, int]:
    """What the arena holds on the first run beyond the liveness peak, and the pages written in
    its regions of at most ``reuse_max`` bytes (those glibc may serve from the heap session
    creation left).

    With ``arena_simulation``: onnxruntime's arena replayed over the liveness order
    (:func:`graph_analysis._arena.simulate_arena`: its resident pages, plus the graph inputs the
    caller holds, minus the liveness peak). Otherwise, or past
    :data:`ARENA_SIMULATION_MAX_BUFFERS`: ``arena_fragmentation_factor x min(L, A - L)``, and no
    region is known (0).
    """
    spans = liveness.buffer_spans
    if runtime.arena_simulation and 0 < len(spans) <= ARENA_SIMULATION_MAX_BUFFERS:
        buffers = (
            planned_buffers(spans, reuse_keys)
            if runtime.planner_reuse and reuse_keys is not None
            else list(spans)
        )
        arena = simulate_arena([b for b in buffers if b[1] >= 0], liveness.step_scratch)
        caller = sum(nbytes for nbytes, first, _last in spans if first < 0)
        small = sum(
            written
            for size, written in zip(arena.region_bytes, arena.region_resident_bytes, strict=True)
            if size <= reuse_max
        )
        return max(0, caller + arena.resident_bytes - liveness.peak_bytes), small
    largest = liveness.largest_tensor_bytes
    return (
        runtime.arena_fragmentation_factor * min(largest, max(0, liveness.peak_bytes - largest)),
        0,
    )


def _training_estimate(
    model: onnx.ModelProto,
    shapes: InferredShapes,
    stored: ModelWeights,
    liveness: GraphLiveness,
    sizes: TensorSizes,
    *,
    optimizer: Optimizer,
    precision: TrainingPrecision,
    checkpointing: float,
    alias_ops: frozenset[str],
    framework_bytes: int,
    optimizer_temporaries: float,
    loss: Loss,
    loss_output_factor: float | None,
    conv_backward_factor: float,
    lstm_factors: tuple[float, float],
    conv_scratchpad_bytes: int,
    pytorch_basis: bool,
) -> TrainingEstimate:
    trainable = stored.trainable_parameters
    largest_trainable = stored.largest_trainable
    frozen_bytes = stored.frozen_bytes
    half = precision in (TrainingPrecision.FP16, TrainingPrecision.BF16, TrainingPrecision.MIXED)
    scale = 0.5 if half else 1.0
    value_bytes = 2 if half else 4
    state_buffers = OPTIMIZER_STATE_BUFFERS[optimizer]
    state_bytes = 4 if precision is TrainingPrecision.MIXED else value_bytes
    saved = _saved_tensors(model, shapes, stored, alias_ops, lstm_workspace_factor=lstm_factors[0])
    saved_total = sum(n for n, _ in saved.values())
    lookup = shapes.lookup()
    output = _loss_output(model, lookup)
    if loss is Loss.AUTO:
        loss, loss_reason = _choose_loss(model, lookup, output)
    else:
        loss_reason = "chosen by the user"
    factor = LOSS_OUTPUT_FACTORS[loss] if loss_output_factor is None else loss_output_factor
    # Gradients per main-graph parameter, from the one classification (running statistics,
    # constants and unused tensors get none).
    grads_by_weight = {
        w.name: w.num_elements * value_bytes
        for w in stored.tensors
        if w.graph == MAIN_GRAPH
        and w.role is Role.PARAMETER
        and is_floating(w.data_type)
        and w.readers
    }
    peak = _backward_peak(
        model,
        shapes,
        stored,
        sizes,
        saved,
        alias_ops,
        output=output,
        loss_factor=factor,
        checkpointing=checkpointing,
        conv_factor=conv_backward_factor,
        lstm_factor=lstm_factors[1],
        parameter_gradients=grads_by_weight,
        all_gradients=trainable * value_bytes,
        scale=scale,
    )
    half_note = " x 1/2 (16-bit)" if half else ""
    p = "P"
    backward = _BACKWARD_PHASES
    out_name = output.name if output is not None else "(none)"
    items = [
        TrainingItem(
            "weights",
            trainable * value_bytes + frozen_bytes,
            f"{p} x {value_bytes} B + frozen buffers",
        ),
        TrainingItem(
            "gradients",
            trainable * value_bytes,
            f"{p} x {value_bytes} B (trainable only; all of them once backward has ended)",
            (StepPhase.OPTIMIZER_STEP,),
        ),
        TrainingItem(
            "gradients_so_far",
            peak.parameter_gradients,
            f"gradients of the parameters whose last consumer's backward has run at {peak.where}"
            " (set to None after every step)",
            backward,
        ),
        TrainingItem(
            "optimizer_state",
            trainable * state_buffers * state_bytes,
            f"{p} x {state_buffers} buffer(s) x {state_bytes} B ({optimizer.value}; created in "
            "the first step's update, held through every later backward)",
            (StepPhase.BACKWARD, StepPhase.OPTIMIZER_STEP),
        ),
        TrainingItem(
            "master_weights",
            trainable * 4 if precision is TrainingPrecision.MIXED else 0,
            f"{p} x 4 B (fp32 master copy, mixed only)",
        ),
        TrainingItem(
            "optimizer_temporaries",
            int(largest_trainable * optimizer_temporaries * state_bytes)
            if state_buffers == 2
            else 0,
            f"largest trainable tensor x {optimizer_temporaries:g} x {state_bytes} B (Adam/AdamW)",
            (StepPhase.OPTIMIZER_STEP,),
        ),
        TrainingItem(
            "saved_activations",
            peak.saved,
            f"tensors kept for backward still needed at {peak.where} (of "
            f"{int(saved_total * checkpointing * scale):,} B saved in all) x {checkpointing:g} "
            "(checkpointing)" + half_note,
            backward,
        ),
        TrainingItem(
            "activation_gradients",
            peak.gradients,
            "gradients of the tensors live in forward at that node, the inputs, and the output "
            "the caller holds" + half_note,
            backward,
        ),
        TrainingItem(
            "backward_buffers",
            peak.conv,
            f"oneDNN backward buffers of that node: a Conv (kernel above 1x1): input + output x "
            f"{conv_backward_factor:g} (blocked-layout copies); an LSTM: output x "
            f"{lstm_factors[1]:g} (scratch)" + half_note,
            backward,
        ),
        TrainingItem(
            "loss",
            peak.loss,
            f"output {out_name} x {factor:g} ({loss.value}: "
            f"{_LOSS_TERMS[loss] if loss_output_factor is None else 'custom factor'}); "
            "held only before the first node's backward" + half_note,
            backward,
        ),
        TrainingItem(
            "convolution_scratchpad",
            int(min(conv_scratchpad_bytes, 16 * _spatial_conv_output_bytes(model, lookup))),
            f"min({conv_scratchpad_bytes:,} B, 16 x the largest stride-1 Conv output (kernel "
            "above 1x1)): oneDNN's persistent scratchpad",
        ),
        TrainingItem("framework_overhead", framework_bytes, "fixed: autograd engine, kernels"),
    ]
    phase_bytes = {
        phase: sum(i.nbytes for i in items if phase in i.phases) for phase in _ALL_PHASES
    }
    basis = (
        "PyTorch training step on CPU (eager, set_to_none grads)"
        if pytorch_basis
        else "framework-neutral (constants measured with PyTorch on CPU)"
    )
    return TrainingEstimate(
        optimizer=optimizer,
        precision=precision,
        checkpointing=checkpointing,
        loss=loss,
        loss_reason=loss_reason,
        saved_activations_bytes=int(saved_total * checkpointing * scale),
        trainable_parameters=trainable,
        frozen_bytes=frozen_bytes,
        items=tuple(items),
        phase_bytes=phase_bytes,
        first_step_peak_bytes=max(
            phase_bytes[StepPhase.FIRST_BACKWARD], phase_bytes[StepPhase.OPTIMIZER_STEP]
        ),
        peak_bytes=max(phase_bytes[StepPhase.BACKWARD], phase_bytes[StepPhase.OPTIMIZER_STEP]),
        basis=basis,
    )


_LOSS_TERMS: Mapping[Loss, str] = {
    Loss.AUTO: "",
    Loss.CROSS_ENTROPY: "log-softmax output, its gradient, the output's gradient",
    Loss.MSE: "target, the output's gradient",
    Loss.SUM: "the output's gradient",
}


def _peak_phase(phase_bytes: Mapping[StepPhase, int], backward: StepPhase) -> StepPhase:
    if phase_bytes.get(backward, 0) >= phase_bytes.get(StepPhase.OPTIMIZER_STEP, 0):
        return backward
    return StepPhase.OPTIMIZER_STEP


def _loss_output(
    model: onnx.ModelProto, lookup: Mapping[tuple[str, str], TensorShape]
) -> TensorShape | None:
    """The graph output the loss reads: the first floating-point one (as PyTorch's ``out[0]``)."""
    for out in model.graph.output:
        shape = lookup.get((MAIN_GRAPH, out.name))
        if shape is not None and shape.data_type is not None and is_floating(shape.data_type):
            return shape
    return None


def _choose_loss(
    model: onnx.ModelProto,
    lookup: Mapping[tuple[str, str], TensorShape],
    output: TensorShape | None,
) -> tuple[Loss, str]:
    """The loss a user of this kind of model trains with, read from the graph's loss output.

    Cross-entropy for logits: an output whose last dim is the row count of an embedding table the
    graph gathers from (a language-model head over the vocabulary), or a ``[batch, classes]``
    output (classes > 1) computed by a Gemm/MatMul, possibly through a bias Add (a classifier).
    Mean-square error otherwise: regression outputs, feature maps, hidden states.
    """
    if output is None or not output.dims:
        return Loss.MSE, "no floating-point output of known shape: mean-square error assumed"
    last = output.dims[-1]
    graph = model.graph
    initializers = {i.name for i in graph.initializer}
    vocabularies = set()
    for node in graph.node:
        if node.op_type == "Gather" and node.input and node.input[0] in initializers:
            table = lookup.get((MAIN_GRAPH, node.input[0]))
            if table is not None and table.dims and len(table.dims) == 2:
                vocabularies.add(table.dims[0])
    if isinstance(last, int) and last > 1 and last in vocabularies and len(output.dims) >= 2:
        return Loss.CROSS_ENTROPY, f"logits over an embedding's {last}-entry vocabulary (LM head)"
    producers = {o: n for n in graph.node for o in n.output}
    node = producers.get(output.name)
    if node is not None and node.op_type == "Add":
        node = next(
            (producers[i] for i in node.input if i in producers and i not in initializers), None
        )
    if (
        len(output.dims) == 2
        and isinstance(last, int)
        and last > 1
        and node is not None
        and node.op_type in ("Gemm", "MatMul")
    ):
        return Loss.CROSS_ENTROPY, f"[batch, {last}] logits of a linear layer (classifier)"
    return Loss.MSE, "not logits (regression output, feature map or hidden state)"


@dataclass(frozen=True)
class _BackwardPeak:
    """Activation memory at the peak of backward, by kind, and where it is reached."""

    saved: int
    gradients: int
    parameter_gradients: int
    conv: int
    loss: int
    where: str

    @property
    def total(self) -> int:
        return self.saved + self.gradients + self.parameter_gradients + self.conv + self.loss


def _backward_peak(
    model: onnx.ModelProto,
    shapes: InferredShapes,
    stored: ModelWeights,
    sizes: TensorSizes,
    saved: Mapping[tuple[str, str], tuple[int, int]],
    alias_ops: frozenset[str],
    *,
    output: TensorShape | None,
    loss_factor: float,
    checkpointing: float,
    conv_factor: float,
    lstm_factor: float,
    parameter_gradients: Mapping[str, int],
    all_gradients: int,
    scale: float,
) -> _BackwardPeak:
    """Walk backward over the main graph's nodes in reverse and find the most activation bytes.

    At the backward of node ``i`` autograd holds: the saved buffers some node at or before ``i``
    still needs (``first saver <= i``); the gradients of the tensors live in forward at step
    ``i`` (a tensor's gradient exists from its last consumer's backward to its producer's, the
    forward interval run in reverse; graph inputs are held as themselves); the output the
    caller holds; and for a Conv with a kernel above 1x1 oneDNN's blocked-layout copies
    (``conv_factor`` x its input + output bytes), for an LSTM its scratch (``lstm_factor`` x its
    output bytes); and the gradients of the parameters whose last consumer's backward has run
    (``parameter_gradients``, by main-graph weight; the rest of ``all_gradients``, such as
    subgraph weights', is held throughout; tied copies never count above ``all_gradients``).
    Before the first node's backward, the loss holds ``loss_factor`` x the output beside every
    saved buffer, and no parameter has a gradient yet (they are set to None after each step).
    Activation bytes are multiplied by ``scale`` (1/2 for 16-bit training).
    """
    graph = model.graph
    lookup = shapes.lookup()
    nodes = list(graph.node)
    count = len(nodes)
    weights = set(stored.names_in(MAIN_GRAPH))
    sources: dict[str, set[str]] = {name: {name} for name in parameter_gradients}
    last_use = [0] * (count + 1)
    seen: set[str] = set()
    weight_only: set[int] = set()
    for index, node in enumerate(nodes):
        ins = [i for i in node.input if i]
        if ins and all(i in weights for i in ins) and not _subgraphs(node):
            # A Transpose of a weight: no backward of its own; the gradient arrives with the
            # consumer of its output.
            weights.update(o for o in node.output if o)
            weight_only.add(index)
            derived: set[str] = set()
            for name in ins:
                derived |= sources.get(name, set())
            for out in node.output:
                sources[out] = derived
    for index in range(count - 1, -1, -1):
        if index in weight_only:
            continue
        for used in _inputs_with_subgraphs(nodes[index]):
            for weight in sources.get(used, set()):
                if weight not in seen:
                    seen.add(weight)
                    last_use[index] += parameter_gradients[weight]
    unseen = sum(n for w, n in parameter_gradients.items() if w not in seen)
    other_gradients = max(0, all_gradients - sum(parameter_gradients.values()))
    start: dict[str, int] = {i.name: 0 for i in graph.input if i.name not in weights}
    end: dict[str, int] = dict.fromkeys(start, 0)
    root: dict[str, str] = {}
    for index, node in enumerate(nodes):
        for used in _inputs_with_subgraphs(node):
            name = root.get(used, used)
            if name in start:
                end[name] = max(end[name], index)
        ins = [i for i in node.input if i]
        if node.op_type in alias_ops and ins and node.output and ins[0] in start:
            root[node.output[0]] = root.get(ins[0], ins[0])
            continue
        for name in node.output:
            if name and name not in weights:
                start[name] = end[name] = index
    for out in graph.output:
        name = root.get(out.name, out.name)
        if name in start:
            end[name] = count - 1
    live = [0] * (count + 1)
    for name, first in start.items():
        size = sizes(MAIN_GRAPH, name)
        live[first] += size
        live[end[name] + 1] -= size
    by_saver = [0] * (count + 1)
    for nbytes_, index in saved.values():
        by_saver[min(max(index, 0), count)] += nbytes_
    held_output = (output.nbytes or 0) if output is not None else 0
    best = _BackwardPeak(
        int(sum(by_saver) * checkpointing * scale),
        int(held_output * scale),
        other_gradients,
        0,
        int(held_output * loss_factor * scale),
        "the loss, before the first node's backward",
    )
    # Parameter gradients present at node i's backward: those last used at i or later.
    grads_from = [0] * (count + 1)
    for index in range(count - 1, -1, -1):
        grads_from[index] = grads_from[index + 1] + last_use[index]
    running_live = 0
    running_saved = 0
    for index, node in enumerate(nodes):
        running_live += live[index]
        running_saved += by_saver[index]
        conv = _conv_buffer_bytes(node, lookup) * conv_factor
        if node.op_type == "LSTM" and node.output:
            conv += sizes(MAIN_GRAPH, node.output[0]) * lstm_factor
        point = _BackwardPeak(
            int(running_saved * checkpointing * scale),
            int((running_live + held_output) * scale),
            min(grads_from[index] + unseen + other_gradients, all_gradients),
            int(conv * scale),
            0,
            f"the backward of {node_label(node, index)}",
        )
        if point.total > best.total:
            best = point
    return best


def _inputs_with_subgraphs(node: onnx.NodeProto) -> list[str]:
    names = [i for i in node.input if i]
    for _suffix, sub in subgraphs_of(node):
        names.extend(outer_references(sub))
    return names


def _spatial_conv_output_bytes(
    model: onnx.ModelProto, lookup: Mapping[tuple[str, str], TensorShape]
) -> int:
    """Output bytes of the largest stride-1 Conv with a kernel above 1x1 (0 when none).

    oneDNN keeps a scratchpad once such a convolution has run: 6.6-7.0 MiB measured from batch 8
    at 32x32 up to 224x224 maps, whatever the channels; about 16 x the output on tiny maps
    (0.96 MiB for a 1 x 16 x 32 x 32 output).
    """
    largest = 0
    for path, graph in iter_graphs(model.graph):
        for node in graph.node:
            if node.op_type != "Conv" or len(node.input) < 2 or not node.output:
                continue
            attrs = {a.name: list(a.ints) for a in node.attribute}
            weight = lookup.get((path, node.input[1]))
            kernel = attrs.get("kernel_shape") or [
                d for d in ((weight.dims or ())[2:] if weight else ()) if isinstance(d, int)
            ]
            strides = attrs.get("strides") or [1]
            if any(k > 1 for k in kernel) and all(st == 1 for st in strides):
                out = lookup.get((path, node.output[0]))
                largest = max(largest, (out.nbytes or 0) if out else 0)
    return largest


def _conv_buffer_bytes(node: onnx.NodeProto, lookup: Mapping[tuple[str, str], TensorShape]) -> int:
    """Input plus output bytes of a main-graph Conv with a kernel above 1x1 (else 0).

    PyTorch's oneDNN convolution backward holds, beyond the gradients themselves, about one
    output-sized and one input-sized buffer (the output gradient and the input reordered to the
    blocked layout; measured: a 3x3 64-channel conv on 8 MiB maps adds 2 x 8 MiB, a 1x1 conv
    nothing). They are freed when that convolution's backward ends.
    """
    if node.op_type != "Conv" or len(node.input) < 2 or not node.output:
        return 0
    kernel = lookup.get((MAIN_GRAPH, node.input[1]))
    dims = kernel.dims if kernel is not None else None
    if dims is None or len(dims) < 3 or all(d == 1 for d in dims[2:]):
        return 0
    ins = lookup.get((MAIN_GRAPH, node.input[0]))
    outs = lookup.get((MAIN_GRAPH, node.output[0]))
    return ((ins.nbytes or 0) if ins else 0) + ((outs.nbytes or 0) if outs else 0)


def _saved_activation_bytes(
    model: onnx.ModelProto, shapes: InferredShapes, stored: ModelWeights, alias_ops: frozenset[str]
) -> int:
    """Bytes of the activation buffers autograd keeps for backward (main graph and subgraphs)."""
    return sum(n for n, _ in _saved_tensors(model, shapes, stored, alias_ops).values())


def _saved_tensors(
    model: onnx.ModelProto,
    shapes: InferredShapes,
    stored: ModelWeights,
    alias_ops: frozenset[str],
    *,
    lstm_workspace_factor: float = 5.0,
) -> dict[tuple[str, str], tuple[int, int]]:
    """``(graph, buffer) -> (bytes, first saver)`` of what autograd keeps for backward.

    ``first saver`` is the index in the main graph's node order of the earliest node whose
    backward needs the buffer: backward runs in reverse order, so the buffer is freed once that
    node's backward has run. Buffers saved inside subgraphs get 0 (held through all of
    backward). MaxPool's int64 indices are buffers of their own (``<output>#indices``), and so
    is an LSTM's oneDNN workspace (``<Y>#workspace``, ``lstm_workspace_factor`` x ``Y``).
    """
    lookup = shapes.lookup()
    sizes = {key: t.nbytes or 0 for key, t in lookup.items()}
    for u in shapes.unknown:
        sizes[(u.graph, u.name)] = u.assumed_nbytes
    found: dict[tuple[str, str], tuple[int, int]] = {}
    scope_weights: dict[str, set[str]] = {}
    scope_scalars: dict[str, set[str]] = {}
    for path, graph in iter_graphs(model.graph):
        main = path == MAIN_GRAPH
        parent = path.rsplit("/", 1)[0] if not main else None
        weights = set(scope_weights.get(parent, set())) if parent is not None else set()
        weights |= stored.names_in(path)
        scope_weights[path] = weights
        scalars = set(stored.scalars_in(path)) | scope_scalars.get(parent or "", set())
        # 1-element activations (a scale computed from a Shape) never need a gradient either.
        scalars |= {
            name
            for (g, name), t in lookup.items()
            if g == path and t.num_elements is not None and t.num_elements <= 1
        }
        scope_scalars[path] = scalars
        root: dict[str, str] = {}
        saved: dict[str, int] = {}
        first_use: dict[str, int] = {}
        for index, node in enumerate(graph.node):
            for name in node.input:
                first_use.setdefault(name, index)
        fused, gelu_inputs = _erf_gelu_nodes(graph, weights)

        def keep(name: str, index: int, saved: dict[str, int] = saved, main: bool = main) -> None:
            saved[name] = min(saved.get(name, index), index if main else 0)

        for name in gelu_inputs:
            keep(name, first_use.get(name, 0))
        for index, node in enumerate(graph.node):
            ins = [i for i in node.input if i]
            if ins and all(i in weights for i in ins) and not _subgraphs(node):
                # Computed from weights only (a Transpose of a weight in a training-mode export):
                # a view or a function of parameters, not an activation.
                weights.update(o for o in node.output if o)
                continue
            if node.op_type in alias_ops and ins and node.output:
                root[node.output[0]] = root.get(ins[0], ins[0])
            if index in fused:
                continue
            if node.op_type in SAVES_INPUTS:
                for name in _saved_inputs(node, weights, scalars):
                    keep(root.get(name, name), index)
            if node.op_type in SAVES_OUTPUTS:
                for name in node.output:
                    if name:
                        keep(root.get(name, name), index)
            if node.op_type in SAVES_INDICES and node.output:
                shape = lookup.get((path, node.output[0]))
                if shape is not None and shape.num_elements is not None:
                    found[(path, node.output[0] + "#indices")] = (
                        shape.num_elements * 8,
                        index if main else 0,
                    )
            if node.op_type == "LSTM" and node.output and node.output[0]:
                workspace = _lookup_size(sizes, path, node.output[0]) * lstm_workspace_factor
                found[(path, node.output[0] + "#workspace")] = (
                    int(workspace),
                    index if main else 0,
                )
        for name, index in saved.items():
            found[(path, name)] = (_lookup_size(sizes, path, name), index)
    return found


def _subgraphs(node: onnx.NodeProto) -> bool:
    return any(
        a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in node.attribute
    )


def _saved_inputs(node: onnx.NodeProto, weights: set[str], scalars: set[str]) -> list[str]:
    """The activation inputs ``node``'s backward keeps, after PyTorch's derivative formulas.

    A product keeps each factor only when the other one needs a gradient (an activation or a
    trainable tensor, not a scalar constant): ``x * 0.5`` keeps nothing of ``x``. A quotient keeps
    its divisor, and its dividend when the divisor needs a gradient. Where keeps its condition,
    Gather its indices.
    """
    ins = list(node.input)

    def needs_grad(name: str) -> bool:
        return bool(name) and name not in scalars

    def activation(name: str) -> bool:
        return bool(name) and name not in weights

    op = node.op_type
    if op == "Mul" and len(ins) == 2:
        a, b = ins
        return [x for x, other in ((a, b), (b, a)) if activation(x) and needs_grad(other)]
    if op == "Div" and len(ins) == 2:
        a, b = ins
        return [x for x in (b,) if activation(x)] + ([a] if activation(a) and needs_grad(b) else [])
    if op == "Where":
        return [x for x in ins[:1] if activation(x)]
    if op in ("Gather", "GatherElements"):
        return [x for x in ins[1:2] if activation(x)]
    return [x for x in ins if activation(x)]


def _erf_gelu_nodes(graph: onnx.GraphProto, weights: set[str]) -> tuple[set[int], set[str]]:
    """Nodes of exact-GELU decompositions ``x * 0.5 * (1 + erf(x / sqrt(2)))`` and their ``x``.

    Exporters write ``torch.nn.functional.gelu`` as Div/Mul -> Erf -> Add -> Mul -> Mul; PyTorch's
    fused GELU saves only ``x`` for backward, not the four intermediates.
    """
    producer: dict[str, int] = {}
    consumers: dict[str, list[int]] = {}
    for index, node in enumerate(graph.node):
        for out in node.output:
            producer[out] = index
        for name in node.input:
            consumers.setdefault(name, []).append(index)
    nodes = graph.node

    def activation_input(index: int) -> str | None:
        others = [i for i in nodes[index].input if i and i not in weights]
        return others[0] if len(others) == 1 else None

    def only_consumer(name: str, ops: tuple[str, ...]) -> int | None:
        users = consumers.get(name, [])
        return users[0] if len(users) == 1 and nodes[users[0]].op_type in ops else None

    fused: set[int] = set()
    inputs: set[str] = set()
    for index, node in enumerate(nodes):
        if node.op_type != "Erf" or not node.input or node.input[0] not in producer:
            continue
        scale = producer[node.input[0]]
        if nodes[scale].op_type not in ("Div", "Mul"):
            continue
        x = activation_input(scale)
        add = only_consumer(node.output[0], ("Add",))
        if x is None or add is None:
            continue
        mul = only_consumer(nodes[add].output[0], ("Mul",))
        if mul is None:
            continue
        group = {scale, index, add, mul}
        other = [i for i in nodes[mul].input if i != nodes[add].output[0]]
        if other and other[0] != x and other[0] in producer:
            half = producer[other[0]]  # (x * 0.5) * (1 + erf(...))
            if nodes[half].op_type == "Mul" and activation_input(half) == x:
                group.add(half)
        else:
            tail = only_consumer(nodes[mul].output[0], ("Mul", "Div"))
            if tail is not None and activation_input(tail) == nodes[mul].output[0]:
                group.add(tail)  # (x * (1 + erf(...))) * 0.5
        fused |= group
        inputs.add(x)
    return fused, inputs


def _lookup_size(sizes: Mapping[tuple[str, str], int], path: str, name: str) -> int:
    return next(
        (sizes[(scope, name)] for scope in enclosing_scopes(path) if (scope, name) in sizes), 0
    )


def memory_to_dict(estimate: MemoryEstimate) -> dict[str, object]:
    """The estimate as plain JSON-ready data (bytes as ints)."""
    inf = estimate.inference
    result: dict[str, object] = {
        "path": estimate.path,
        "inputs": {t.name: list(t.dims or ()) for t in estimate.shapes.inputs},
        "dim_values": dict(estimate.shapes.dim_values),
        "defaulted_dims": list(estimate.shapes.defaulted),
        "shape_engines": list(estimate.shapes.engines),
        "shape_notes": list(estimate.shapes.notes),
        "unknown_tensors": [
            {
                "name": u.name,
                "graph": u.graph,
                "producer": u.producer,
                "assumed_bytes": u.assumed_nbytes,
                "treatment": u.treatment,
            }
            for u in estimate.shapes.unknown
        ],
        "executed_graph_not_used": estimate.assumptions.get("executed_graph_not_used"),
        "inference": {
            "weights_bytes": inf.weights_bytes,
            "prepackable_bytes": inf.prepackable_bytes,
            "half_upcast_bytes": inf.half_upcast_bytes,
            "activations_peak_bytes": inf.activations_peak_bytes,
            "activations_sum_bytes": inf.activations_sum_bytes,
            "largest_activation_bytes": inf.largest_activation_bytes,
            "inputs_bytes": inf.inputs_bytes,
            "heap_kept_bytes": inf.heap_kept_bytes,
            "fusion_kept_bytes": inf.fusion_kept_bytes,
            "heap_reused_bytes": inf.heap_reused_bytes,
            "arena_fragmentation_bytes": inf.arena_fragmentation_bytes,
            "subgraph_state_bytes": inf.subgraph_state_bytes,
            "graph_state_bytes": inf.graph_state_bytes,
            "code_pages_bytes": inf.code_pages_bytes,
            "code_pages_measured": inf.code_pages_measured,
            "runtime_overhead_bytes": inf.runtime_overhead_bytes,
            "peak_bytes": inf.peak_bytes,
            "session_creation_bytes": inf.session_creation_bytes,
            "inference_bytes": inf.inference_bytes,
            "peak_nodes": list(inf.peak_nodes),
            "peak_tensors": [
                {"name": t.name, "graph": t.graph, "bytes": t.nbytes} for t in inf.peak_tensors
            ],
            "activations_graph": inf.activations_graph,
            "exported_activations_peak_bytes": inf.exported_activations_peak_bytes,
            "runtime_model": {
                "session_fixed_bytes": inf.runtime.session_fixed_bytes,
                "run_fixed_bytes": inf.runtime.run_fixed_bytes,
                "load_factor": inf.runtime.load_factor,
                "resident_factor": inf.runtime.resident_factor,
                "heap_kept_factor": inf.runtime.heap_kept_factor,
                "fusion_kept_factor": inf.runtime.fusion_kept_factor,
                "heap_reuse_region_max_bytes": inf.runtime.heap_reuse_region_max_bytes,
                "heap_tensor_max_bytes": inf.runtime.heap_tensor_max_bytes,
                "prepack_factor": inf.runtime.prepack_factor,
                "prepack_release_min_bytes": inf.runtime.prepack_release_min_bytes,
                "reorder_copies_factor": inf.runtime.reorder_copies_factor,
                "arena_factor": inf.runtime.arena_factor,
                "arena_fragmentation_factor": inf.runtime.arena_fragmentation_factor,
                "arena_simulation": inf.runtime.arena_simulation,
                "planner_reuse": inf.runtime.planner_reuse,
                "heap_threshold_rises": inf.runtime.heap_threshold_rises,
                "subgraph_session_bytes": inf.runtime.subgraph_session_bytes,
                "session_code_bytes": inf.runtime.session_code_bytes,
                "session_node_bytes": inf.runtime.session_node_bytes,
                "session_initializer_bytes": inf.runtime.session_initializer_bytes,
                "half_upcast_factor": inf.runtime.half_upcast_factor,
                "half_activation_factor": inf.runtime.half_activation_factor,
            },
        },
    }
    if estimate.training is not None:
        tr = estimate.training
        training: dict[str, object] = {
            "optimizer": tr.optimizer.value,
            "precision": tr.precision.value,
            "checkpointing": tr.checkpointing,
            "loss": tr.loss.value,
            "loss_reason": tr.loss_reason,
            "saved_activations_total_bytes": tr.saved_activations_bytes,
            "trainable_parameters": tr.trainable_parameters,
            "basis": tr.basis,
        }
        for item in tr.items:
            training[f"{item.name}_bytes"] = item.nbytes
        training["peak_bytes"] = tr.peak_bytes
        training["peak_phase"] = tr.steady_peak_phase.value
        training["first_step"] = {
            "peak_bytes": tr.first_step_peak_bytes,
            "peak_phase": tr.first_step_peak_phase.value,
        }
        training["phases"] = {phase.value: n for phase, n in tr.phase_bytes.items()}
        training["held_during"] = {
            item.name: [phase.value for phase in item.phases] for item in tr.items
        }
        training["formulas"] = {item.name: item.formula for item in tr.items}
        result["training"] = training
    return result

from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class MathMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MATH_MODE_UNSPECIFIED: _ClassVar[MathMode]
    MATH_MODE_MATH: _ClassVar[MathMode]
    MATH_MODE_GSM8K: _ClassVar[MathMode]

class CompareProfile(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    COMPARE_PROFILE_UNSPECIFIED: _ClassVar[CompareProfile]
    COMPARE_PROFILE_STRICT: _ClassVar[CompareProfile]
    COMPARE_PROFILE_APPS: _ClassVar[CompareProfile]
    COMPARE_PROFILE_HUMAN_EVAL: _ClassVar[CompareProfile]

class Verdict(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    VERDICT_UNSPECIFIED: _ClassVar[Verdict]
    PASS: _ClassVar[Verdict]
    FAIL: _ClassVar[Verdict]
    NO_ANSWER: _ClassVar[Verdict]
    COMPILE_ERROR: _ClassVar[Verdict]
    RUNTIME_ERROR: _ClassVar[Verdict]
    TIMEOUT: _ClassVar[Verdict]
    MEMORY_LIMIT: _ClassVar[Verdict]
    OUTPUT_LIMIT: _ClassVar[Verdict]
    SANDBOX_ERROR: _ClassVar[Verdict]
    INVALID_REQUEST: _ClassVar[Verdict]
MATH_MODE_UNSPECIFIED: MathMode
MATH_MODE_MATH: MathMode
MATH_MODE_GSM8K: MathMode
COMPARE_PROFILE_UNSPECIFIED: CompareProfile
COMPARE_PROFILE_STRICT: CompareProfile
COMPARE_PROFILE_APPS: CompareProfile
COMPARE_PROFILE_HUMAN_EVAL: CompareProfile
VERDICT_UNSPECIFIED: Verdict
PASS: Verdict
FAIL: Verdict
NO_ANSWER: Verdict
COMPILE_ERROR: Verdict
RUNTIME_ERROR: Verdict
TIMEOUT: Verdict
MEMORY_LIMIT: Verdict
OUTPUT_LIMIT: Verdict
SANDBOX_ERROR: Verdict
INVALID_REQUEST: Verdict

class VerifyRequest(_message.Message):
    __slots__ = ("request_id", "timeout_s", "math", "exact", "code")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_S_FIELD_NUMBER: _ClassVar[int]
    MATH_FIELD_NUMBER: _ClassVar[int]
    EXACT_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    timeout_s: float
    math: MathTask
    exact: ExactTask
    code: CodeTask
    def __init__(self, request_id: _Optional[str] = ..., timeout_s: _Optional[float] = ..., math: _Optional[_Union[MathTask, _Mapping]] = ..., exact: _Optional[_Union[ExactTask, _Mapping]] = ..., code: _Optional[_Union[CodeTask, _Mapping]] = ...) -> None: ...

class MathTask(_message.Message):
    __slots__ = ("completion", "gold", "extract", "mode")
    COMPLETION_FIELD_NUMBER: _ClassVar[int]
    GOLD_FIELD_NUMBER: _ClassVar[int]
    EXTRACT_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    completion: str
    gold: str
    extract: bool
    mode: MathMode
    def __init__(self, completion: _Optional[str] = ..., gold: _Optional[str] = ..., extract: _Optional[bool] = ..., mode: _Optional[_Union[MathMode, str]] = ...) -> None: ...

class ExactTask(_message.Message):
    __slots__ = ("completion", "target", "answer_format", "extract")
    COMPLETION_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    ANSWER_FORMAT_FIELD_NUMBER: _ClassVar[int]
    EXTRACT_FIELD_NUMBER: _ClassVar[int]
    completion: str
    target: str
    answer_format: str
    extract: bool
    def __init__(self, completion: _Optional[str] = ..., target: _Optional[str] = ..., answer_format: _Optional[str] = ..., extract: _Optional[bool] = ...) -> None: ...

class Limits(_message.Message):
    __slots__ = ("cpu_time_s", "wall_time_s", "memory_bytes", "max_processes", "max_output_bytes", "max_file_bytes")
    CPU_TIME_S_FIELD_NUMBER: _ClassVar[int]
    WALL_TIME_S_FIELD_NUMBER: _ClassVar[int]
    MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_PROCESSES_FIELD_NUMBER: _ClassVar[int]
    MAX_OUTPUT_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_FILE_BYTES_FIELD_NUMBER: _ClassVar[int]
    cpu_time_s: float
    wall_time_s: float
    memory_bytes: int
    max_processes: int
    max_output_bytes: int
    max_file_bytes: int
    def __init__(self, cpu_time_s: _Optional[float] = ..., wall_time_s: _Optional[float] = ..., memory_bytes: _Optional[int] = ..., max_processes: _Optional[int] = ..., max_output_bytes: _Optional[int] = ..., max_file_bytes: _Optional[int] = ...) -> None: ...

class StdioCase(_message.Message):
    __slots__ = ("stdin", "expected_stdout")
    STDIN_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_STDOUT_FIELD_NUMBER: _ClassVar[int]
    stdin: str
    expected_stdout: str
    def __init__(self, stdin: _Optional[str] = ..., expected_stdout: _Optional[str] = ...) -> None: ...

class StdioTests(_message.Message):
    __slots__ = ("cases",)
    CASES_FIELD_NUMBER: _ClassVar[int]
    cases: _containers.RepeatedCompositeFieldContainer[StdioCase]
    def __init__(self, cases: _Optional[_Iterable[_Union[StdioCase, _Mapping]]] = ...) -> None: ...

class CallCase(_message.Message):
    __slots__ = ("args_json", "expected_json")
    ARGS_JSON_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_JSON_FIELD_NUMBER: _ClassVar[int]
    args_json: str
    expected_json: str
    def __init__(self, args_json: _Optional[str] = ..., expected_json: _Optional[str] = ...) -> None: ...

class CallTests(_message.Message):
    __slots__ = ("fn_name", "cases")
    FN_NAME_FIELD_NUMBER: _ClassVar[int]
    CASES_FIELD_NUMBER: _ClassVar[int]
    fn_name: str
    cases: _containers.RepeatedCompositeFieldContainer[CallCase]
    def __init__(self, fn_name: _Optional[str] = ..., cases: _Optional[_Iterable[_Union[CallCase, _Mapping]]] = ...) -> None: ...

class AssertTests(_message.Message):
    __slots__ = ("test_code", "entry_point", "prompt")
    TEST_CODE_FIELD_NUMBER: _ClassVar[int]
    ENTRY_POINT_FIELD_NUMBER: _ClassVar[int]
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    test_code: str
    entry_point: str
    prompt: str
    def __init__(self, test_code: _Optional[str] = ..., entry_point: _Optional[str] = ..., prompt: _Optional[str] = ...) -> None: ...

class CodeTask(_message.Message):
    __slots__ = ("program", "stdio", "call", "asserts", "limits", "profile", "run_all_tests")
    PROGRAM_FIELD_NUMBER: _ClassVar[int]
    STDIO_FIELD_NUMBER: _ClassVar[int]
    CALL_FIELD_NUMBER: _ClassVar[int]
    ASSERTS_FIELD_NUMBER: _ClassVar[int]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    PROFILE_FIELD_NUMBER: _ClassVar[int]
    RUN_ALL_TESTS_FIELD_NUMBER: _ClassVar[int]
    program: str
    stdio: StdioTests
    call: CallTests
    asserts: AssertTests
    limits: Limits
    profile: CompareProfile
    run_all_tests: bool
    def __init__(self, program: _Optional[str] = ..., stdio: _Optional[_Union[StdioTests, _Mapping]] = ..., call: _Optional[_Union[CallTests, _Mapping]] = ..., asserts: _Optional[_Union[AssertTests, _Mapping]] = ..., limits: _Optional[_Union[Limits, _Mapping]] = ..., profile: _Optional[_Union[CompareProfile, str]] = ..., run_all_tests: _Optional[bool] = ...) -> None: ...

class TestResult(_message.Message):
    __slots__ = ("passed", "verdict", "exit_code", "stdout", "stderr", "cpu_time_s", "wall_time_s", "detail")
    PASSED_FIELD_NUMBER: _ClassVar[int]
    VERDICT_FIELD_NUMBER: _ClassVar[int]
    EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    STDOUT_FIELD_NUMBER: _ClassVar[int]
    STDERR_FIELD_NUMBER: _ClassVar[int]
    CPU_TIME_S_FIELD_NUMBER: _ClassVar[int]
    WALL_TIME_S_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    passed: bool
    verdict: Verdict
    exit_code: int
    stdout: str
    stderr: str
    cpu_time_s: float
    wall_time_s: float
    detail: str
    def __init__(self, passed: _Optional[bool] = ..., verdict: _Optional[_Union[Verdict, str]] = ..., exit_code: _Optional[int] = ..., stdout: _Optional[str] = ..., stderr: _Optional[str] = ..., cpu_time_s: _Optional[float] = ..., wall_time_s: _Optional[float] = ..., detail: _Optional[str] = ...) -> None: ...

class VerifyResponse(_message.Message):
    __slots__ = ("request_id", "verdict", "reward", "extracted", "canonical", "rule", "tests", "message", "forgeable", "elapsed_ms", "queue_ms")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    VERDICT_FIELD_NUMBER: _ClassVar[int]
    REWARD_FIELD_NUMBER: _ClassVar[int]
    EXTRACTED_FIELD_NUMBER: _ClassVar[int]
    CANONICAL_FIELD_NUMBER: _ClassVar[int]
    RULE_FIELD_NUMBER: _ClassVar[int]
    TESTS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    FORGEABLE_FIELD_NUMBER: _ClassVar[int]
    ELAPSED_MS_FIELD_NUMBER: _ClassVar[int]
    QUEUE_MS_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    verdict: Verdict
    reward: float
    extracted: str
    canonical: str
    rule: str
    tests: _containers.RepeatedCompositeFieldContainer[TestResult]
    message: str
    forgeable: bool
    elapsed_ms: float
    queue_ms: float
    def __init__(self, request_id: _Optional[str] = ..., verdict: _Optional[_Union[Verdict, str]] = ..., reward: _Optional[float] = ..., extracted: _Optional[str] = ..., canonical: _Optional[str] = ..., rule: _Optional[str] = ..., tests: _Optional[_Iterable[_Union[TestResult, _Mapping]]] = ..., message: _Optional[str] = ..., forgeable: _Optional[bool] = ..., elapsed_ms: _Optional[float] = ..., queue_ms: _Optional[float] = ...) -> None: ...

class VerifyBatch(_message.Message):
    __slots__ = ("requests",)
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    requests: _containers.RepeatedCompositeFieldContainer[VerifyRequest]
    def __init__(self, requests: _Optional[_Iterable[_Union[VerifyRequest, _Mapping]]] = ...) -> None: ...

class VerifyBatchResult(_message.Message):
    __slots__ = ("responses",)
    RESPONSES_FIELD_NUMBER: _ClassVar[int]
    responses: _containers.RepeatedCompositeFieldContainer[VerifyResponse]
    def __init__(self, responses: _Optional[_Iterable[_Union[VerifyResponse, _Mapping]]] = ...) -> None: ...

class GetInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ServerInfo(_message.Message):
    __slots__ = ("version", "sandbox_backends", "sandbox_workers", "math_workers", "max_queue", "default_limits", "max_message_bytes", "in_flight", "code_off")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    SANDBOX_BACKENDS_FIELD_NUMBER: _ClassVar[int]
    SANDBOX_WORKERS_FIELD_NUMBER: _ClassVar[int]
    MATH_WORKERS_FIELD_NUMBER: _ClassVar[int]
    MAX_QUEUE_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_LIMITS_FIELD_NUMBER: _ClassVar[int]
    MAX_MESSAGE_BYTES_FIELD_NUMBER: _ClassVar[int]
    IN_FLIGHT_FIELD_NUMBER: _ClassVar[int]
    CODE_OFF_FIELD_NUMBER: _ClassVar[int]
    version: str
    sandbox_backends: _containers.RepeatedScalarFieldContainer[str]
    sandbox_workers: int
    math_workers: int
    max_queue: int
    default_limits: Limits
    max_message_bytes: int
    in_flight: int
    code_off: str
    def __init__(self, version: _Optional[str] = ..., sandbox_backends: _Optional[_Iterable[str]] = ..., sandbox_workers: _Optional[int] = ..., math_workers: _Optional[int] = ..., max_queue: _Optional[int] = ..., default_limits: _Optional[_Union[Limits, _Mapping]] = ..., max_message_bytes: _Optional[int] = ..., in_flight: _Optional[int] = ..., code_off: _Optional[str] = ...) -> None: ...

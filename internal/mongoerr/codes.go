package mongoerr

//go:generate go run ./gen -in codes.go -out code_string.go

// Code is a MongoDB error code, the number a server sends as a command
// error's "code". Its String method returns MongoDB's codeName:
// the name MongoDB gives the code, or "Location<code>" for the codes MongoDB
// reports without a name (the numbered assertion sites in its source).
//
// A constant's name below is MongoDB's name when MongoDB has one; a Location
// code gets a descriptive name and a line comment with its codeName, which
// the generator in ./gen turns into String's table (code_string.go).
type Code int32

// Codes MongoDB gives a name.
const (
	InternalError                            Code = 1
	BadValue                                 Code = 2
	NoSuchKey                                Code = 4
	FailedToParse                            Code = 9
	Unauthorized                             Code = 13
	TypeMismatch                             Code = 14
	Overflow                                 Code = 15
	InvalidLength                            Code = 16
	AuthenticationFailed                     Code = 18
	IllegalOperation                         Code = 20
	InvalidBSON                              Code = 22
	NamespaceNotFound                        Code = 26
	IndexNotFound                            Code = 27
	PathNotViable                            Code = 28
	ConflictingUpdateOperators               Code = 40
	CursorNotFound                           Code = 43
	NoMatchingDocument                       Code = 47
	NamespaceExists                          Code = 48
	MaxTimeMSExpired                         Code = 50
	DollarPrefixedFieldName                  Code = 52
	InvalidIDField                           Code = 53 // InvalidIdField
	NotSingleValueField                      Code = 54
	EmptyFieldName                           Code = 56
	DottedFieldName                          Code = 57
	CommandNotFound                          Code = 59
	ImmutableField                           Code = 66
	ViewDepthLimitExceeded                   Code = 149
	CommandNotSupportedOnView                Code = 166
	OptionNotSupportedOnView                 Code = 167
	MergeStageNoMatchingDocument             Code = 13113
	CannotCreateIndex                        Code = 67
	InvalidOptions                           Code = 72
	InvalidNamespace                         Code = 73
	IndexOptionsConflict                     Code = 85
	IndexKeySpecsConflict                    Code = 86
	OperationFailed                          Code = 96
	NotExactValueField                       Code = 111
	CommandNotSupported                      Code = 115
	CappedPositionLost                       Code = 136
	CursorInUse                              Code = 143
	InvalidPipelineOperator                  Code = 168
	CannotIndexParallelArrays                Code = 171
	IncompatibleCollationVersion             Code = 174
	TransactionTooOld                        Code = 225
	CursorKilled                             Code = 237
	NotImplemented                           Code = 238
	ConversionFailure                        Code = 241
	InvalidResumeToken                       Code = 260
	ChangeStreamFatalError                   Code = 280
	ChangeStreamHistoryLost                  Code = 286
	NoQueryExecutionPlans                    Code = 291
	QueryExceededMemoryLimitNoDiskUseAllowed Code = 292
	UnsupportedOpQueryCommand                Code = 352
	BSONObjectTooLarge                       Code = 10334
	DuplicateKey                             Code = 11000
	InterruptedAtShutdown                    Code = 11600
	Interrupted                              Code = 11601
)

// Codes of replication, networking, sharding and transactions that devdb
// itself never causes but that a client can be told about: fail points
// (configureFailPoint failCommand's errorCode) answer with them, and the
// retryable-write and change-stream error labels depend on them.
const (
	HostUnreachable                    Code = 6
	HostNotFound                       Code = 7
	UnknownError                       Code = 8
	LockTimeout                        Code = 24
	ManualInterventionRequired         Code = 51
	StaleShardVersion                  Code = 63
	WriteConcernFailed                 Code = 64
	UnknownReplWriteConcern            Code = 79
	NetworkTimeout                     Code = 89
	ShutdownInProgress                 Code = 91
	UnsatisfiableWriteConcern          Code = 100
	WriteConflict                      Code = 112
	ConflictingOperationInProgress     Code = 117
	DocumentValidationFailure          Code = 121
	FailedToSatisfyReadPreference      Code = 133
	ReadConcernMajorityNotAvailableYet Code = 134
	StaleEpoch                         Code = 150
	PrimarySteppedDown                 Code = 189
	ElectionInProgress                 Code = 216
	RetryChangeStream                  Code = 234
	SnapshotTooOld                     Code = 239
	SnapshotUnavailable                Code = 246
	NoSuchTransaction                  Code = 251
	TransactionCommitted               Code = 256
	ExceededTimeLimit                  Code = 262
	OperationNotSupportedInTransaction Code = 263
	FailPointSetFailed                 Code = 266
	TransactionTooLarge                Code = 334
	PreparedTransactionInProgress      Code = 267
	SocketException                    Code = 9001
	NotWritablePrimary                 Code = 10107
	InterruptedDueToReplStateChange    Code = 11602
	StaleConfig                        Code = 13388
	NotPrimaryNoSecondaryOk            Code = 13435
	NotPrimaryOrSecondary              Code = 13436
)

// Location codes of commands, requests and pipelines as a whole.
const (
	DistinctTooBig           Code = 17217   // Location17217
	UpdateResultTooLarge     Code = 17419   // Location17419
	UpsertResultTooLarge     Code = 17420   // Location17420
	UnrecognizedStage        Code = 40324   // Location40324
	StageNotOneField         Code = 40323   // Location40323
	StageNotFirst            Code = 40602   // Location40602
	StageNotObject           Code = 40272   // Location40272
	IDLDuplicateField        Code = 40413   // Location40413
	IDLMissingField          Code = 40414   // Location40414
	IDLUnknownField          Code = 40415   // Location40415
	IDLValueOutOfRange       Code = 51024   // Location51024
	OpMsgMissingDB           Code = 40571   // Location40571
	ChangeStreamNotObject    Code = 50808   // Location50808
	ResumeAfterAndStartAfter Code = 50865   // Location50865
	MultipleResumeOptions    Code = 40674   // Location40674
	SystemCollectionWriteTxn Code = 50791   // Location50791
	SplitEventTooLarge       Code = 7182500 // Location7182500
	SplitEventEmpty          Code = 7182502 // Location7182502
	SplitEventSpecNotEmpty   Code = 7182800 // Location7182800
	SplitEventNotLast        Code = 7182802 // Location7182802
	ExplainOnSecondary       Code = 50746   // Location50746
)

// Location codes of field paths, variables and expression syntax.
const (
	FieldPathEmptyComponent     Code = 15998   // Location15998
	FieldPathDollarPrefix       Code = 16410   // Location16410
	FieldPathNullByte           Code = 16411   // Location16411
	FieldPathDot                Code = 16412   // Location16412
	FieldPathEmpty              Code = 40352   // Location40352
	FieldPathDollarOnly         Code = 16872   // Location16872
	NestedDollarField           Code = 16404   // Location16404
	DuplicateFieldName          Code = 16406   // Location16406
	VariableNameEmpty           Code = 16866   // Location16866
	VariableNameBadStart        Code = 16867   // Location16867
	VariableNameBadChar         Code = 16868   // Location16868
	VariableNameBadCharInLet    Code = 16870   // Location16870
	UndefinedVariable           Code = 17276   // Location17276
	ExpressionNotOneField       Code = 15983   // Location15983
	ExpressionArgCountExact     Code = 16020   // Location16020
	ExpressionArgCountRange     Code = 16021   // Location16021
	ConflictingPaths            Code = 40176   // Location40176
	InvalidFieldNameForOperator Code = 5654600 // Location5654600
	FieldNotConstant            Code = 5654602 // Location5654602
	NullByteInKey               Code = 4940400 // Location4940400
	RegexBadOption              Code = 51108   // Location51108
	RegexInvalid                Code = 51091   // Location51091
	SortBadDirection            Code = 15975   // Location15975
)

// Location codes of expression operators.
const (
	SizeNotArray                  Code = 17124   // Location17124
	ArrayElemAtNotArray           Code = 28689   // Location28689
	ArrayElemAtIndexNotNumeric    Code = 28690   // Location28690
	ArrayElemAtIndexNotInt32      Code = 28691   // Location28691
	InNotArray                    Code = 40081   // Location40081
	ConvertToDateFailed           Code = 16006   // Location16006
	ConvertToStringFailed         Code = 16007   // Location16007
	ConcatArraysNotArray          Code = 28664   // Location28664
	ConcatNotString               Code = 16702   // Location16702
	SliceSecondNotInt32           Code = 28725   // Location28725
	SliceThirdNotInt32            Code = 28727   // Location28727
	RangeStartNotNumeric          Code = 34443   // Location34443
	RangeStartNotInt32            Code = 34444   // Location34444
	RangeEndNotNumeric            Code = 34445   // Location34445
	RangeEndNotInt32              Code = 34446   // Location34446
	RangeStepNotNumeric           Code = 34447   // Location34447
	RangeStepNotInt32             Code = 34448   // Location34448
	StrLenCPNotString             Code = 34471   // Location34471
	StrLenBytesNotString          Code = 34473   // Location34473
	SliceInvalid                  Code = 28724   // Location28724
	SliceCountNotPositive         Code = 28729   // Location28729
	LetNotObject                  Code = 16874   // Location16874
	LetUnknownParameter           Code = 16875   // Location16875
	LetMissingVars                Code = 16876   // Location16876
	LetMissingIn                  Code = 16877   // Location16877
	SubstrStartNotNumeric         Code = 16034   // Location16034
	SubstrLengthNotNumeric        Code = 16035   // Location16035
	SubstrStartNegative           Code = 50752   // Location50752
	SubstrStartContinuationByte   Code = 28656   // Location28656
	SubstrEndInsideCharacter      Code = 28657   // Location28657
	SubstrCPStartNotNumeric       Code = 34450   // Location34450
	SubstrCPStartNotInt32         Code = 34451   // Location34451
	SubstrCPLengthNotNumeric      Code = 34452   // Location34452
	SubstrCPLengthNotInt32        Code = 34453   // Location34453
	SubstrCPLengthNegative        Code = 34454   // Location34454
	SubstrCPStartNegative         Code = 34455   // Location34455
	ReverseArrayNotArray          Code = 34435   // Location34435
	RangeZeroStep                 Code = 34449   // Location34449
	MergeObjectsNotObject         Code = 40400   // Location40400
	IndexOfArrayNotArray          Code = 40090   // Location40090
	IndexOfNotString              Code = 40091   // Location40091
	IndexOfSubstringNotString     Code = 40092   // Location40092
	IndexOfStartNotIntegral       Code = 40096   // Location40096
	IndexOfStartNegative          Code = 40097   // Location40097
	CondUnknownParameter          Code = 17083   // Location17083
	CondMissingIf                 Code = 17080   // Location17080
	CondMissingThen               Code = 17081   // Location17081
	CondMissingElse               Code = 17082   // Location17082
	SplitInputNotString           Code = 40085   // Location40085
	SplitSeparatorNotString       Code = 40086   // Location40086
	SplitEmptySeparator           Code = 40087   // Location40087
	IfNullTooFewArguments         Code = 1257300 // Location1257300
	TrimNotObject                 Code = 50696   // Location50696
	TrimUnknownArgument           Code = 50694   // Location50694
	TrimMissingInput              Code = 50695   // Location50695
	TrimInputNotString            Code = 50699   // Location50699
	TrimCharsNotString            Code = 50700   // Location50700
	ObjectToArrayNotObject        Code = 40390   // Location40390
	ArrayToObjectNotArray         Code = 40386   // Location40386
	ArrayToObjectMixedFormat      Code = 40396   // Location40396
	ArrayToObjectPairSize         Code = 40397   // Location40397
	ArrayToObjectBadElement       Code = 40398   // Location40398
	ArrayToObjectBadKeys          Code = 40392   // Location40392
	ArrayToObjectMissingKey       Code = 40393   // Location40393
	ArrayToObjectKeyNotString     Code = 40394   // Location40394
	SwitchNotObject               Code = 40060   // Location40060
	SwitchBranchesNotArray        Code = 40061   // Location40061
	SwitchBranchNotObject         Code = 40062   // Location40062
	SwitchUnknownBranchArgument   Code = 40063   // Location40063
	SwitchBranchMissingCase       Code = 40064   // Location40064
	SwitchBranchMissingThen       Code = 40065   // Location40065
	SwitchNoMatchingBranch        Code = 40066   // Location40066
	SwitchUnknownArgument         Code = 40067   // Location40067
	SwitchNoBranches              Code = 40068   // Location40068
	GetFieldUnknownArgument       Code = 3041701 // Location3041701
	GetFieldMissingField          Code = 3041702 // Location3041702
	SetFieldNotObject             Code = 4161100 // Location4161100
	SetFieldUnknownArgument       Code = 4161101 // Location4161101
	SetFieldMissingArgument       Code = 4161102 // Location4161102
	SetFieldInputNotObject        Code = 4161105 // Location4161105
	AddMultipleDates              Code = 16612   // Location16612
	SubtractFromDate              Code = 16613   // Location16613
	SubtractBadTypes              Code = 16556   // Location16556
	MultiplyNotNumeric            Code = 16555   // Location16555
	DivideNotNumeric              Code = 16609   // Location16609
	ModByZero                     Code = 16610   // Location16610
	ModNotNumeric                 Code = 16611   // Location16611
	NumericOnly                   Code = 28765   // Location28765
	AbsLongMin                    Code = 28680   // Location28680
	SqrtNegative                  Code = 28714   // Location28714
	LnNotPositive                 Code = 28766   // Location28766
	Log10NotPositive              Code = 28761   // Location28761
	PowBaseNotNumeric             Code = 28762   // Location28762
	PowExponentNotNumeric         Code = 28763   // Location28763
	PowZeroNegativeExponent       Code = 28764   // Location28764
	RoundNotNumeric               Code = 51081   // Location51081
	RoundPrecisionNotIntegral     Code = 51082   // Location51082
	RoundPrecisionOutOfRange      Code = 51083   // Location51083
	RegexInputNotString           Code = 51104   // Location51104
	RegexPatternBadType           Code = 51105   // Location51105
	RegexOptionsNotString         Code = 51106   // Location51106
	RegexOptionsTwice             Code = 51107   // Location51107
	RegexNullByte                 Code = 51109   // Location51109
	RegexCompileFailed            Code = 51111   // Location51111
	MapFilterNotObject            Code = 28646   // Location28646
	MapFilterUnknownParameter     Code = 28647   // Location28647
	MapFilterMissingInput         Code = 28648   // Location28648
	MapFilterMissingParameter     Code = 28649   // Location28649
	FilterInputNotArray           Code = 28651   // Location28651
	MapInputNotArray              Code = 16883   // Location16883
	FilterLimitNotPositive        Code = 327391  // Location327391
	ReduceNotObject               Code = 40075   // Location40075
	ReduceUnknownArgument         Code = 40076   // Location40076
	ReduceMissingInput            Code = 40077   // Location40077
	ReduceMissingInitialValue     Code = 40078   // Location40078
	ReduceMissingIn               Code = 40079   // Location40079
	ReduceInputNotArray           Code = 40080   // Location40080
	StringArgumentNotString       Code = 51746   // Location51746
	TimezoneNotString             Code = 40517   // Location40517
	UnknownTimezone               Code = 40485   // Location40485
	DateUnknownOption             Code = 40535   // Location40535
	DateMissingDate               Code = 40539   // Location40539
	DateToStringFormatNotString   Code = 18533   // Location18533
	DateFormatTrailingPercent     Code = 18535   // Location18535
	DateFormatBadCharacter        Code = 18536   // Location18536
	DateComponentOutOfRange       Code = 18537   // Location18537
	DateFromStringFormatNotString Code = 40684   // Location40684
)

// Location codes of pipeline stages, accumulators and projections.
const (
	GroupFieldNotAccumulator        Code = 40234   // Location40234
	GroupFieldTwoAccumulators       Code = 40238   // Location40238
	AccumulatorUnary                Code = 40237   // Location40237
	UnknownGroupOperator            Code = 15952   // Location15952
	GroupNotObject                  Code = 15947   // Location15947
	GroupFieldOperatorName          Code = 40236   // Location40236
	GroupFieldDotted                Code = 40235   // Location40235
	GroupMissingID                  Code = 15955   // Location15955
	MatchNotObject                  Code = 15959   // Location15959
	ProjectNotObject                Code = 15969   // Location15969
	ReplaceRootNotObject            Code = 40229   // Location40229
	ReplaceRootNewRootNotObject     Code = 40228   // Location40228
	CountFieldEmpty                 Code = 40156   // Location40156
	CountFieldDollar                Code = 40158   // Location40158
	CountFieldDotted                Code = 40160   // Location40160
	SortByCountNotExpression        Code = 40147   // Location40147
	SortByCountBadPath              Code = 40148   // Location40148
	SortByCountBadObject            Code = 40149   // Location40149
	SortNotObject                   Code = 15973   // Location15973
	LimitNotNumber                  Code = 15957   // Location15957
	LimitNotPositive                Code = 15958   // Location15958
	SkipNotNumber                   Code = 15972   // Location15972
	SkipNegative                    Code = 15956   // Location15956
	UnsetEmpty                      Code = 31119   // Location31119
	UnsetNotString                  Code = 31120   // Location31120
	RedactBadResult                 Code = 17053   // Location17053
	UnwindPathNotString             Code = 28808   // Location28808
	UnwindPreserveNotBool           Code = 28809   // Location28809
	UnwindIndexFieldEmpty           Code = 28810   // Location28810
	UnwindUnknownOption             Code = 28811   // Location28811
	UnwindMissingPath               Code = 28812   // Location28812
	UnwindPathNoDollar              Code = 28818   // Location28818
	UnwindIndexFieldDollar          Code = 28822   // Location28822
	UnwindNotStringOrObject         Code = 15981   // Location15981
	SampleNotObject                 Code = 28745   // Location28745
	SampleSizeNotNumber             Code = 28746   // Location28746
	SampleSizeNegative              Code = 28747   // Location28747
	SampleUnknownOption             Code = 28748   // Location28748
	SampleMissingSize               Code = 28749   // Location28749
	FacetNotObject                  Code = 40169   // Location40169
	FacetPipelineNotArray           Code = 40170   // Location40170
	FacetStageNotObject             Code = 40171   // Location40171
	FacetBadOutputName              Code = 40353   // Location40353
	FacetStageNotAllowed            Code = 40600   // Location40600
	FacetTooLarge                   Code = 4031700 // Location4031700
	ProjectionExclusionInInclusion  Code = 31254   // Location31254
	ProjectionInclusionInExclusion  Code = 31253   // Location31253
	ProjectionPathCollision         Code = 31250   // Location31250
	ProjectionPathPrefixCollision   Code = 31249   // Location31249
	ProjectionExpressionInExclusion Code = 31252   // Location31252
	ProjectionNestedPositional      Code = 31255   // Location31255
	ProjectionPositionalTwice       Code = 31276   // Location31276
	ProjectionPositionalNoMatch     Code = 51246   // Location51246
	ProjectionEmptySubProjection    Code = 51270   // Location51270
	ProjectionEmpty                 Code = 51272   // Location51272
)

// Location codes of the $out and $merge stages.
const (
	OutputStageNotLast        Code = 40601   // Location40601
	MergeOnNotStringOrArray   Code = 51186   // Location51186
	MergeOnEmpty              Code = 51187   // Location51187
	MergeOnElementNotString   Code = 51134   // Location51134
	MergeOnFieldMissing       Code = 51132   // Location51132
	MergeOnFieldArray         Code = 51185   // Location51185
	MergeOnNoUniqueIndex      Code = 51183   // Location51183
	MergeWhenMatchedBad       Code = 51191   // Location51191
	OutToSystemCollection     Code = 17385   // Location17385
	OutToInternalDatabase     Code = 31321   // Location31321
	MergeToSystemCollection   Code = 31319   // Location31319
	MergeToInternalDatabase   Code = 31320   // Location31320
	DocumentsNotArrayOfObject Code = 5858203 // Location5858203
)

// Location codes of the set, trigonometric and n-element expression
// operators, and of the date arithmetic operators.
const (
	AllElementsTrueNotArray     Code = 17040   // Location17040
	AnyElementTrueNotArray      Code = 17041   // Location17041
	SetUnionNotArray            Code = 17043   // Location17043
	SetEqualsNotArray           Code = 17044   // Location17044
	SetEqualsArgCount           Code = 17045   // Location17045
	SetIsSubsetFirstNotArray    Code = 17046   // Location17046
	SetIsSubsetSecondNotArray   Code = 17042   // Location17042
	SetIntersectionNotArray     Code = 17047   // Location17047
	SetDifferenceFirstNotArray  Code = 17048   // Location17048
	SetDifferenceSecondNotArray Code = 17049   // Location17049
	LogArgNotNumeric            Code = 28756   // Location28756
	LogBaseNotNumeric           Code = 28757   // Location28757
	LogArgNotPositive           Code = 28758   // Location28758
	LogBaseNotPositive          Code = 28759   // Location28759
	ZipNotObject                Code = 34460   // Location34460
	ZipInputsNotArray           Code = 34461   // Location34461
	ZipDefaultsNotArray         Code = 34462   // Location34462
	ZipLongestNotBool           Code = 34463   // Location34463
	ZipUnknownField             Code = 34464   // Location34464
	ZipMissingInputs            Code = 34465   // Location34465
	ZipDefaultsNeedLongest      Code = 34466   // Location34466
	ZipDefaultsLength           Code = 34467   // Location34467
	ZipInputNotArray            Code = 34468   // Location34468
	TsSecondNotTimestamp        Code = 5687301 // Location5687301
	TsIncrementNotTimestamp     Code = 5687302 // Location5687302
	TrigOutOfBounds             Code = 50989   // Location50989
	Atan2FirstNotNumeric        Code = 51044   // Location51044
	Atan2SecondNotNumeric       Code = 51045   // Location51045
	BsonSizeNotObject           Code = 31393   // Location31393
	BinarySizeNotStringOrBinary Code = 51276   // Location51276
	NArrayNotObject             Code = 5787801 // Location5787801
	MinMaxNNotObject            Code = 5787900 // Location5787900
	NArrayUnknownField          Code = 5787901 // Location5787901
	NArrayMissingN              Code = 5787906 // Location5787906
	NArrayMissingInput          Code = 5787907 // Location5787907
	NArrayInputNotArray         Code = 5788200 // Location5788200
	NArrayNNotPositive          Code = 5787908 // Location5787908
	NArrayNNotInteger           Code = 5787902 // Location5787902
	NArrayNNotIntegral          Code = 5787903 // Location5787903
	TopNotObject                Code = 5788001 // Location5788001
	TopUnknownField             Code = 5788002 // Location5788002
	TopMissingN                 Code = 5788003 // Location5788003
	TopMissingOutput            Code = 5788004 // Location5788004
	TopMissingSortBy            Code = 5788005 // Location5788005
	SortArrayNotObject          Code = 2942500 // Location2942500
	SortArrayUnknownField       Code = 2942501 // Location2942501
	SortArrayMissingInput       Code = 2942502 // Location2942502
	SortArrayMissingSortBy      Code = 2942503 // Location2942503
	SortArrayInputNotArray      Code = 2942504 // Location2942504
	SortArrayBadSortBy          Code = 2942505 // Location2942505
	DateArithNotObject          Code = 5166400 // Location5166400
	DateArithUnknownField       Code = 5166401 // Location5166401
	DateArithMissingField       Code = 5166402 // Location5166402
	DateArithStartNotDate       Code = 5166403 // Location5166403
	DateArithUnitNotString      Code = 5166404 // Location5166404
	DateArithAmountNotInt       Code = 5166405 // Location5166405
	DateArithOverflow           Code = 5166406 // Location5166406
	DateSubtractMinAmount       Code = 6045000 // Location6045000
	DateAddAmountInvalid        Code = 5976500 // Location5976500
	DateTruncOverflow           Code = 5439002 // Location5439002
	DateTruncBinSizeUnsupported Code = 5439006 // Location5439006
	DateDiffNotObject           Code = 5166301 // Location5166301
	DateDiffUnknownField        Code = 5166302 // Location5166302
	DateDiffMissingStart        Code = 5166303 // Location5166303
	DateDiffMissingEnd          Code = 5166304 // Location5166304
	DateDiffMissingUnit         Code = 5166305 // Location5166305
	DateDiffNotDate             Code = 5166307 // Location5166307
	DateDiffOverflow            Code = 5166308 // Location5166308
	DateTruncNotObject          Code = 5439007 // Location5439007
	DateTruncUnknownField       Code = 5439008 // Location5439008
	DateTruncMissingDate        Code = 5439009 // Location5439009
	DateTruncMissingUnit        Code = 5439010 // Location5439010
	DateTruncNotDate            Code = 5439012 // Location5439012
	DateUnitNotString           Code = 5439013 // Location5439013
	DateUnitUnknown             Code = 5439014 // Location5439014
	StartOfWeekNotString        Code = 5439015 // Location5439015
	StartOfWeekUnknown          Code = 5439016 // Location5439016
	DateTruncBinSizeNotInt      Code = 5439017 // Location5439017
	DateTruncBinSizeNotPositive Code = 5439018 // Location5439018
	DateFromPartsNotObject      Code = 40519   // Location40519
	DateFromPartsUnknownField   Code = 40518   // Location40518
	DateFromPartsMissingYear    Code = 40516   // Location40516
	DateFromPartsMixed          Code = 40489   // Location40489
	DateFromPartsNotInt         Code = 40515   // Location40515
	DatePartOutOfRange          Code = 31034   // Location31034
	DateToPartsNotObject        Code = 40524   // Location40524
	DateToPartsUnknownField     Code = 40520   // Location40520
	DateToPartsMissingDate      Code = 40522   // Location40522
	DateFromPartsYearRange      Code = 40523   // Location40523
	DateToPartsISONotBool       Code = 40521   // Location40521
)

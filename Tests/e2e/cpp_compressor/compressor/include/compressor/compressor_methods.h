#ifndef CHI_COMPRESSOR_METHODS_H_
#define CHI_COMPRESSOR_METHODS_H_

/** The set of methods in the compressor task */
struct Method : public TaskMethod {
  TASK_METHOD_T kCompress = 10;
  TASK_METHOD_T kDecompress = 11;
  TASK_METHOD_T kChain = 12;
  TASK_METHOD_T kWhere = 13;
  TASK_METHOD_T kCount = 14;
};

#endif  // CHI_COMPRESSOR_METHODS_H_
